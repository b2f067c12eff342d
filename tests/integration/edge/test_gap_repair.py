"""Gap repair: the NATS node the edge is connected to stops while events are recorded (3-node cluster).

Nothing may be lost, nothing duplicated, and the order kept. The client
behaves as a real one: if its stream ends it reconnects with the last cursor it
received (retrying while the edge answers 503).
"""

from __future__ import annotations

import asyncio
import itertools
from urllib.parse import urlparse

import nats
import pytest

from tests.support.cluster import NatsCluster
from tests.support.edge import edge_settings, start_edge
from tests.support.sse import open_stream_retrying
from tests.support.stack import SECRET, Stack, start_stack
from userstream.embedded_nats import NatsServerProcess
from userstream.errors import UserstreamError
from userstream.events import ActivityInput

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

RECORD_FOR = 4.0  # seconds of traffic; the node stops after a third of it


async def _record(stack: Stack, stop: asyncio.Event, permitted: list[str], *, every_org: bool = False) -> None:
    """Record without pause in two orgs, half (or all, with ``every_org``) visible to the reader.

    Each call is retried with its idempotency key until it lands.
    """
    for index in itertools.count():
        if stop.is_set():
            return
        org = "acme" if index % 2 == 0 else "globex"
        activity = ActivityInput(
            type="page.updated", organization_id=org, entity_id=f"p{index}", idempotency_key=f"gap-{index}"
        )
        while True:
            try:
                result = await stack.activity.client.record(activity)
                break
            except UserstreamError:
                await asyncio.sleep(0.05)  # the outcome is unknown: the same key never records twice
        if org == "acme" or every_org:
            permitted.append(result.cursor)


async def _read(stack: Stack, start: str, received: list[str], last: asyncio.Future[str]) -> int:
    """Follow the stream, reconnecting after the last received cursor whenever it ends, until ``last`` arrives."""
    cursor, reconnects = start, 0
    while True:
        headers = {**stack.auth("rita"), "Last-Event-ID": cursor}
        stream = await open_stream_retrying(stack.base_url, headers=headers, timeout=30)
        try:
            while True:
                event = await stream.next_event(timeout=30)
                if event.event == "change":
                    received.append(event.id or "")
                    cursor = event.id or cursor
                    if last.done() and cursor == last.result():
                        return reconnects
                elif event.event in ("close", "must-refetch"):
                    assert event.event == "close", event.data  # never asked to refetch: nothing was lost
                    cursor = event.id or cursor  # a resync rewinds the client's cursor
                    break
        except (EOFError, ConnectionError):
            pass
        finally:
            await stream.close()
        reconnects += 1


async def test_node_of_the_edge_stops_while_recording(nats_cluster: NatsCluster) -> None:
    stack = await start_stack(nats_cluster.urls, STREAM_REPLICAS="3")
    try:
        await stack.acl.grant_membership("rita", "acme", "member")
        async with await stack.stream("rita") as first:
            start = (await first.next_event()).id or ""
        connected = stack.edge.runtime.nats.client.connected_url
        assert connected is not None
        victim = next(node for node in nats_cluster.nodes if node.port == urlparse(str(connected.geturl())).port)

        permitted: list[str] = []
        received: list[str] = []
        stop = asyncio.Event()
        last: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        reader = asyncio.get_running_loop().create_task(_read(stack, start, received, last))
        recorder = asyncio.get_running_loop().create_task(_record(stack, stop, permitted))
        await asyncio.sleep(RECORD_FOR / 3)
        await asyncio.to_thread(victim.stop)
        await asyncio.sleep(RECORD_FOR * 2 / 3)
        stop.set()
        await recorder
        last.set_result(permitted[-1])
        if received and received[-1] == permitted[-1]:
            reader.cancel()  # it already has everything and waits for more
        else:
            await asyncio.wait_for(reader, 60)
        assert len(received) == len(set(received)), "no duplicates"
        assert received == permitted, f"{len(received)} received of {len(permitted)} recorded"
        assert stack.edge.runtime.nats.client.connected_url != connected
    finally:
        await stack.stop()


async def test_the_stream_leader_dies_while_recording(nats_cluster: NatsCluster) -> None:
    """The edge stays connected (to a follower) while the leader is killed: nothing lost, order kept."""
    stack = await start_stack(nats_cluster.urls, STREAM_REPLICAS="3")
    try:
        info = await stack.activity.service.connection.manager.stream_info("ACTIVITY")
        assert info.cluster is not None
        leader = next(node for node in nats_cluster.nodes if node.name == info.cluster.leader)
        follower = next(node for node in nats_cluster.nodes if node is not leader)
        acl_addr = f"127.0.0.1:{stack.acl_service.port}"
        await stack.edge.stop()
        stack.edge = await start_edge(edge_settings(follower.url, acl_addr, SECRET))
        await stack.acl.grant_membership("rita", "acme", "member")
        await stack.acl.grant_membership("rita", "globex", "member")
        async with await stack.stream("rita") as first:
            start = (await first.next_event()).id or ""
        permitted: list[str] = []
        received: list[str] = []
        stop = asyncio.Event()
        last: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        reader = asyncio.get_running_loop().create_task(_read(stack, start, received, last))
        recorder = asyncio.get_running_loop().create_task(_record(stack, stop, permitted, every_org=True))
        await asyncio.sleep(RECORD_FOR / 3)
        await asyncio.to_thread(leader.kill)
        await asyncio.sleep(RECORD_FOR * 2 / 3)
        stop.set()
        await recorder
        last.set_result(permitted[-1])
        if not (received and received[-1] == permitted[-1]):
            await asyncio.wait_for(reader, 60)
        reader.cancel()
        # A resync (see the next tests) may repeat events after the one it rewinds to; nothing may be missing.
        first_seen = list(dict.fromkeys(received))
        assert first_seen == permitted, f"{len(first_seen)} received of {len(permitted)} recorded"
        assert stack.edge.runtime.nats.client.connected_url is not None
    finally:
        await stack.stop()


async def test_a_jump_in_nats_last_sequence_is_repaired_from_the_log(nats_server: NatsServerProcess) -> None:
    """Events stored but never republished (the live flow skipped them) reach the client before anything newer."""
    stack = await start_stack(nats_server.url)
    try:
        await stack.acl.grant_membership("sam", "acme", "member")
        async with await stack.stream("sam") as stream:
            assert (await stream.next_event()).event == "offset"
            first = await stack.page("acme", "first")
            assert await stream.change_ids_until(first) == [first]
            client = await nats.connect(nats_server.url)
            try:
                manager = client.jsm()
                config = (await manager.stream_info("ACTIVITY")).config
                republish = config.republish
                config.republish = None
                await manager.update_stream(config)  # from here, stored but not republished
                skipped = [await stack.page("acme", f"skipped-{i}") for i in range(3)]
                await stack.page("globex", "elsewhere")
                config.republish = republish
                await manager.update_stream(config)
            finally:
                await client.close()
            after = await stack.page("acme", "after")
            assert await stream.change_ids_until(after) == [*skipped, after]
        assert stack.edge.runtime.hub.stats.gap_repairs >= 1
    finally:
        await stack.stop()


async def test_an_event_lost_on_one_channel_after_newer_events_on_another_is_resent(
    nats_server: NatsServerProcess,
) -> None:
    """A live message lost on one subject is noticed only when that subject's next message arrives.

    A connection that meanwhile delivered a newer event of another channel cannot
    receive the lost one in order any more: it is told to resync from just before
    it (`close` with `id:` rewound), so the client gets it on reconnect instead of
    never (the newer event comes again; nothing is lost).
    """
    stack = await start_stack(nats_server.url)
    try:
        await stack.acl.grant_membership("tom", "acme", "member")
        await stack.acl.grant_membership("tom", "globex", "member")
        async with await stack.stream("tom") as stream:
            assert (await stream.next_event()).event == "offset"
            client = await nats.connect(nats_server.url)
            try:
                manager = client.jsm()
                config = (await manager.stream_info("ACTIVITY")).config
                republish = config.republish
                config.republish = None
                await manager.update_stream(config)
                lost = await stack.page("acme", "lost-live")  # stored, its live copy never sent
                config.republish = republish
                await manager.update_stream(config)
            finally:
                await client.close()
            other = await stack.page("globex", "newer")  # delivered live at once
            after = await stack.page("acme", "after")  # reveals the jump on org.acme
            events = await stream.events_until(lambda event: event.event == "close")
        assert [event.id for event in events if event.event == "change"] == [other]
        close = events[-1]
        assert close.json() == {"reason": "resync"}
        assert close.id is not None
        assert int(close.id) == int(lost) - 1
        async with await stack.stream("tom", last_event_id=close.id) as resumed:
            assert await resumed.change_ids_until(after) == [lost, other, after]
        assert stack.edge.runtime.hub.stats.resyncs == 1
    finally:
        await stack.stop()
