"""Resuming: gap-free replay, the offset event, precedence, must-refetch, offset=now (CONTRACT §5, issue 5)."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest

from tests.conftest import start_activity
from tests.integration.edge.conftest import StackFactory
from tests.support.sse import open_stream
from tests.support.stack import Stack, start_another_edge
from userstream.cursor import SEQUENCE_SPAN, parse_cursor
from userstream.embedded_nats import NatsServerProcess
from userstream.events import ActivityInput

pytestmark = pytest.mark.integration


async def _start(stack: Stack, user: str) -> str:
    """Connect, take the offset cursor, disconnect."""
    async with await stack.stream(user) as stream:
        offset = await stream.next_event()
        assert offset.event == "offset"
        return offset.id or ""


async def test_resume_with_permitted_and_forbidden_events_in_between(stack: Stack) -> None:
    await stack.acl.grant_membership("alice", "acme", "member")
    async with await stack.stream("alice") as stream:
        assert (await stream.next_event()).event == "offset"
        first = await stack.page("acme", "p1")
        (change,) = await stream.changes(1)
        assert change.id == first
    permitted = [
        await stack.page("acme", "p2"),
        await stack.entity("attachment", "acme", "created"),
        await stack.entity("organization", "acme", "updated"),
    ]
    await stack.page("globex", "not-a-member")
    await stack.acl.grant_membership("bob", "acme", "member")  # someone else's membership
    permitted.append(await stack.page("acme", "p3"))
    forbidden_last = await stack.page("globex", "last")
    async with await stack.stream("alice", last_event_id=first) as resumed:
        events = await resumed.events_until(lambda e: e.event == "offset")
        assert [e.id for e in events if e.event == "change"] == permitted
        offset = events[-1]
        # The offset names the last replayed event (CONTRACT §5), not the later forbidden one.
        assert offset.json() == {"cursor": permitted[-1], "resumed": True}
        assert offset.id == permitted[-1]
        live = await stack.page("acme", "live")
        await stack.page("globex", "still-not")
        assert await resumed.change_ids_until(live) == [live]
    assert forbidden_last


async def test_resume_with_nothing_permitted_names_the_given_cursor(stack: Stack) -> None:
    start = await _start(stack, "alice")
    await stack.page("globex")
    async with await stack.stream("alice", last_event_id=start) as resumed:
        offset = await resumed.next_event()
        assert offset.event == "offset"
        assert offset.json() == {"cursor": start, "resumed": True}


async def test_resume_across_a_grant_and_a_revocation_inside_the_gap(stack: Stack) -> None:
    start = await _start(stack, "carol")
    before = await stack.page("acme", "before")
    grant = await stack.acl.grant_membership("carol", "acme", "member")
    during = await stack.page("acme", "during")
    revoke = await stack.acl.revoke_membership("carol", "acme")
    after = await stack.page("acme", "after")
    async with await stack.stream("carol", last_event_id=start) as resumed:
        events = await resumed.events_until(lambda e: e.event == "offset")
        changes = [e.id for e in events if e.event == "change"]
        assert changes == [grant.cursor, during, revoke.cursor]
        assert before not in changes
        assert after not in changes
        assert events[-1].json()["cursor"] == revoke.cursor
        await stack.page("acme", "later")
        marker = await stack.acl.grant_membership("carol", "marker", "member")
        assert await resumed.change_ids_until(marker.cursor) == [marker.cursor]


async def test_resume_on_a_different_edge_process(stack: Stack) -> None:
    await stack.acl.grant_membership("dave", "acme", "member")
    start = await _start(stack, "dave")
    missed = [await stack.page("acme", f"p{i}") for i in range(5)]
    other = await start_another_edge(stack)
    try:
        headers = {**stack.auth("dave"), "Last-Event-ID": start}
        async with await open_stream(other.base_url, headers=headers) as resumed:
            events = await resumed.events_until(lambda e: e.event == "offset")
            assert [e.id for e in events if e.event == "change"] == missed
            assert events[-1].json() == {"cursor": missed[-1], "resumed": True}
            live = await stack.page("acme", "live")
            assert await resumed.change_ids_until(live) == [live]
    finally:
        await other.stop()


async def test_last_event_id_beats_offset_and_offset_works_alone(stack: Stack) -> None:
    await stack.acl.grant_membership("erin", "acme", "member")
    start = await _start(stack, "erin")
    first = await stack.page("acme", "p1")
    second = await stack.page("acme", "p2")
    async with await stack.stream("erin", last_event_id=first, query={"offset": start}) as both:
        events = await both.events_until(lambda e: e.event == "offset")
        assert [e.id for e in events if e.event == "change"] == [second]
    async with await stack.stream("erin", query={"offset": start}) as by_query:
        events = await by_query.events_until(lambda e: e.event == "offset")
        assert [e.id for e in events if e.event == "change"] == [first, second]
        assert events[-1].json() == {"cursor": second, "resumed": True}
    # Last-Event-ID "now"... is not a cursor for EventSource, but the header follows the same rules.
    async with await stack.stream("erin", last_event_id="now", query={"offset": start}) as now:
        offset = await now.next_event()
        assert offset.json() == {"cursor": second, "resumed": False}


async def test_offset_now_starts_at_the_head_without_replay(stack: Stack) -> None:
    await stack.acl.grant_membership("fred", "acme", "member")
    await stack.page("acme", "old")
    head = await stack.head()
    async with await stack.stream("fred", query={"offset": "now"}) as stream:
        offset = await stream.next_event()
        assert offset.event == "offset"
        assert offset.id == head
        assert offset.json() == {"cursor": head, "resumed": False}
        live = await stack.page("acme", "new")
        (change,) = await stream.changes(1)
        assert change.id == live
    async with await stack.stream("fred") as default:  # no start position at all: now
        offset = await default.next_event()
        assert offset.json() == {"cursor": live, "resumed": False}


async def test_offset_zero_replays_the_whole_retained_log(stack: Stack) -> None:
    grant = await stack.acl.grant_membership("gina", "acme", "member")
    page = await stack.page("acme")
    async with await stack.stream("gina", query={"offset": "0"}) as stream:
        events = await stream.events_until(lambda e: e.event == "offset")
        assert [e.id for e in events if e.event == "change"] == [grant.cursor, page]
        assert events[-1].json() == {"cursor": page, "resumed": True}


async def test_a_resume_longer_than_the_queue_limit_is_paced_not_cut_off(make_stack: StackFactory) -> None:
    """A backlog of several times USERSTREAM_QUEUE_MAX_BYTES flows at the client's pace, all of it, in order."""
    stack = await make_stack(edge_env={"QUEUE_MAX_BYTES": "65536"})
    await stack.acl.grant_membership("hank", "acme", "member")
    await stack.acl.grant_membership("hank", "globex", "member")
    start = await _start(stack, "hank")
    data = '{"text": "' + "x" * 500 + '"}'
    expected: list[str] = []
    for batch in range(4):
        results = await stack.activity.client.record_many(
            [
                ActivityInput(
                    type="page.updated",
                    organization_id=("acme", "globex", "initech")[i % 3],
                    entity_id=f"p{batch}-{i}",
                    data_json=data,
                )
                for i in range(300)
            ]
        )
        expected += [r.cursor for i, r in enumerate(results) if i % 3 != 2]
    async with await stack.stream("hank", last_event_id=start) as resumed:
        events = await resumed.events_until(lambda e: e.event in ("offset", "close"), timeout=30)
        assert events[-1].event == "offset", events[-1]
        assert [e.id for e in events if e.event == "change"] == expected  # ~480 KB through a 64 KB queue
        live = await stack.page("acme", "live")
        assert await resumed.change_ids_until(live) == [live]


async def test_must_refetch_when_the_cursor_has_expired(make_stack: StackFactory) -> None:
    stack = await make_stack(RETENTION_MAX_MSGS="5")
    await stack.acl.grant_membership("ivy", "acme", "member")
    start = await _start(stack, "ivy")
    for i in range(10):
        await stack.page("acme", f"p{i}")
    for headers, query in (({"Last-Event-ID": start}, None), ({}, {"offset": start})):
        async with await stack.stream("ivy", headers=headers, query=query) as stream:
            events = await stream.read_to_end()
            assert stream.response.status == 200
            assert stream.retry == 3000  # retry: first
            assert [(e.event, e.json()) for e in events] == [("must-refetch", {"reason": "cursor-expired"})]
            assert bytes(stream.raw) == b'retry: 3000\n\nevent: must-refetch\ndata: {"reason":"cursor-expired"}\n\n'
    # A cursor still inside the retention resumes normally.
    head = await stack.head()
    async with await stack.stream("ivy", last_event_id=head) as fine:
        assert (await fine.next_event()).json() == {"cursor": head, "resumed": True}


async def test_must_refetch_when_the_cursor_is_unknown(stack: Stack) -> None:
    start = await _start(stack, "jack")
    cursor = parse_cursor(start)
    await stack.page("acme")
    ahead = str(cursor.log_id * SEQUENCE_SPAN + cursor.sequence + 1000)
    other_log = str((cursor.log_id - 3600) * SEQUENCE_SPAN + cursor.sequence)
    for value in (ahead, other_log):
        async with await stack.stream("jack", last_event_id=value) as stream:
            events = await stream.read_to_end()
            assert [(e.event, e.json()) for e in events] == [("must-refetch", {"reason": "cursor-unknown"})], value
    # The public stream answers the same.
    async with await open_stream(stack.base_url, "/public/stream", query={"offset": ahead}) as public:
        events = await public.read_to_end()
        assert [(e.event, e.json()) for e in events] == [("must-refetch", {"reason": "cursor-unknown"})]
    # No slot is left taken by refetch answers.
    assert not stack.edge.runtime.registry.connections
    assert stack.edge.runtime.registry.streams_of("jack") == 0


async def test_a_cursor_from_a_recreated_log_is_unknown(stack: Stack, nats_server: NatsServerProcess) -> None:
    """The stream deleted and created again (disaster recovery): old cursors must not point into the new log."""
    start = await _start(stack, "kate")
    await stack.page("acme")
    old = await stack.head()
    # Cursors carry the log's creation second: make sure the new log is born in another second.
    await asyncio.sleep(max(0.0, 1.05 - (time.time() - parse_cursor(old).log_id)))
    open_across = await open_stream(stack.base_url, "/public/stream")
    assert (await open_across.next_event()).event == "offset"
    client = await nats.connect(nats_server.url)
    try:
        await client.jsm().delete_stream("ACTIVITY")
    finally:
        await client.close()
    await stack.activity.client.close()
    await stack.activity.service.stop()
    stack.activity = await start_activity(nats_server.url)
    # A stream open across the recreation is ended; its cursor then gets must-refetch.
    events = await open_across.read_to_end()
    assert [(e.event, e.json()) for e in events if e.event != "ping"] == [("close", {"reason": "log-recreated"})]
    await open_across.close()
    for value in (start, old):
        async with await stack.stream("kate", last_event_id=value) as stream:
            events = await stream.read_to_end()
            assert [(e.event, e.json()) for e in events] == [("must-refetch", {"reason": "cursor-unknown"})], value
    # Streams of the new log carry the new log's cursors and follow it live.
    async with await open_stream(stack.base_url, "/public/stream") as public:
        offset = await public.next_event()
        assert parse_cursor(offset.id or "").log_id != parse_cursor(old).log_id
        new = await stack.page("acme", "new", public=True)
        assert parse_cursor(new).log_id != parse_cursor(old).log_id
        assert await public.change_ids_until(new) == [new]
