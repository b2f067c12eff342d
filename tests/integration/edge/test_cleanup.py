"""Disconnect releases everything: 1,000 connect/disconnect cycles leave no channel, slot, subscription or task."""

from __future__ import annotations

import asyncio
import random

import pytest

from tests.support.edge import wait_until
from tests.support.sse import SSEStream, open_stream, request
from tests.support.stack import Stack
from userstream.edge.hub import Hub
from userstream.edge.user_feed import USER_FEED

pytestmark = pytest.mark.integration

CYCLES = 1000
PARALLEL = 25
USERS = [f"u{i}" for i in range(40)]
ORGS = [f"o{i}" for i in range(8)]


def _edge_tasks(client: object) -> int:
    """Tasks of the edge: its own code, uvicorn's per-request tasks, and its NATS client's subscriptions.

    acl and activity share this process and event loop; their tasks come and go on their own.
    """
    count = 0
    for task in asyncio.all_tasks():
        coroutine = task.get_coro()
        code = getattr(coroutine, "cr_code", None)
        filename = code.co_filename if code is not None else ""
        if any(part in filename for part in ("/userstream/edge/", "/uvicorn/", "/litestar/")):
            count += 1
            continue
        frame = getattr(coroutine, "cr_frame", None)
        owner = frame.f_locals.get("self") if frame is not None else None
        if owner is not None and getattr(owner, "_conn", None) is client:
            count += 1
    return count


async def _cycle(stack: Stack, index: int, start: str, rng: random.Random) -> None:
    user = USERS[index % len(USERS)]
    shape = index % 5
    if shape == 0:
        # Gone before the response: the request is sent and the socket closed at once.
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.edge.port)
        writer.write(
            f"GET /me/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {stack.token(user)}\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        del reader
        return
    if shape == 1:
        stream = await open_stream(stack.base_url, "/public/stream")
    elif shape == 2:
        stream = await stack.stream(user, last_event_id=start)  # a resume: catch-up reads
    else:
        stream = await stack.stream(user)
    async with stream:
        if rng.random() < 0.7:
            await stream.next_event()  # the offset, sometimes more


async def _traffic(stack: Stack, stop: asyncio.Event) -> None:
    rng = random.Random(7)
    while not stop.is_set():
        org = rng.choice(ORGS)
        if rng.random() < 0.2:
            await stack.membership(rng.choice(USERS), org, "created", "member")
        else:
            await stack.page(org, public=rng.random() < 0.5)
        await asyncio.sleep(0.005)


async def test_a_thousand_cycles_leave_nothing_behind(stack: Stack) -> None:
    for i, user in enumerate(USERS):
        for org in ORGS[i % 3 : i % 3 + 3]:
            await stack.acl.grant_membership(user, org, "member")
    runtime = stack.edge.runtime
    client = runtime.nats.client
    start = await stack.head()
    # Warm up once (the request inbox subscription, lazily created pools), then take the baseline.
    async with await stack.stream(USERS[0]) as warm:
        await warm.next_event()
    await wait_until(lambda: not runtime.registry.connections and _only_the_user_feed(runtime.hub), 5)
    baseline_subs = len(client._subs)
    baseline_tasks = _edge_tasks(client)

    stop = asyncio.Event()
    traffic = asyncio.get_running_loop().create_task(_traffic(stack, stop))
    rng = random.Random(1)
    for first in range(0, CYCLES, PARALLEL):
        await asyncio.gather(*(_cycle(stack, index, start, rng) for index in range(first, first + PARALLEL)))
    stop.set()
    await traffic

    def released() -> bool:
        return (
            not runtime.registry.connections
            and runtime.registry.writers == 0
            and _only_the_user_feed(runtime.hub)
            and runtime.hub.subscription_count == 1
            and len(client._subs) == baseline_subs
        )

    await wait_until(released, 15)
    assert runtime.registry._reserved == 0
    assert not runtime.registry._per_user
    await wait_until(lambda: not runtime.hub._tasks and _edge_tasks(client) <= baseline_tasks, 15)
    # And the edge still works.
    await stack.acl.grant_membership("after", "o1", "member")
    async with await stack.stream("after") as stream:
        assert (await stream.next_event()).event == "offset"
        cursor = await stack.page("o1")
        assert await stream.change_ids_until(cursor) == [cursor]


def _only_the_user_feed(hub: Hub) -> bool:
    """What a worker keeps with no stream open: its one `live.user.*` subscription (user_feed.py)."""
    return list(hub.channels) == [USER_FEED]


async def test_a_client_that_vanishes_mid_stream_is_forgotten(stack: Stack) -> None:
    await stack.acl.grant_membership("alice", "acme", "member")
    result = await request(stack.base_url, "/me/stream", headers=stack.auth("alice"))
    assert isinstance(result, SSEStream)
    await result.next_event()
    result.writer.transport.abort()  # a reset, not a clean close
    await wait_until(lambda: not stack.edge.runtime.registry.connections, 5)
    await stack.page("acme")  # writing to nobody must not fail or leak
    await wait_until(lambda: _only_the_user_feed(stack.edge.runtime.hub), 5)
