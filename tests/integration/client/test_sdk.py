"""The Python SDK against a real stack: resume across an edge restart, must-refetch, token refresh, the cache."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.integration.client.conftest import FAST, RestartableStack
from tests.support.auth import FixtureServer, HookAnswers
from tests.support.stack import SECRET, start_stack
from userstream.client import Change, Closed, LocalCache, MustRefetch, Offset, StreamEvent, UserStream
from userstream.cursor import parse_cursor
from userstream.embedded_nats import NatsServerProcess
from userstream.tokens import issue_token

pytestmark = pytest.mark.integration


class Collector:
    """Iterates a stream in a task; tests wait for what they expect to have arrived."""

    def __init__(self, stream: UserStream) -> None:
        self.stream = stream
        self.events: list[StreamEvent] = []
        self._arrived = asyncio.Condition()
        self._task = asyncio.get_running_loop().create_task(self._collect())

    async def _collect(self) -> None:
        async for event in self.stream:
            async with self._arrived:
                self.events.append(event)
                self._arrived.notify_all()

    @property
    def changes(self) -> list[Change]:
        return [event for event in self.events if isinstance(event, Change)]

    async def until(self, predicate: object, timeout: float = 10.0) -> None:
        async def wait() -> None:
            async with self._arrived:
                await self._arrived.wait_for(lambda: predicate(self))  # type: ignore[operator]

        await asyncio.wait_for(wait(), timeout)

    async def offsets(self, count: int) -> None:
        await self.until(lambda c: sum(isinstance(e, Offset) for e in c.events) >= count)

    async def cursors(self, *cursors: str) -> None:
        await self.until(lambda c: set(cursors) <= {change.cursor for change in c.changes})

    async def close(self) -> None:
        self._task.cancel()
        with_suppressed = asyncio.gather(self._task, return_exceptions=True)
        await with_suppressed
        await self.stream.close()


@pytest.fixture
async def collectors() -> AsyncIterator[list[Collector]]:
    started: list[Collector] = []
    yield started
    for collector in started:
        await collector.close()


def open_stream(stack: RestartableStack, user: str, **options: object) -> UserStream:
    return UserStream(stack.base_url, stack.stack.token(user), reconnect=FAST, **options)  # type: ignore[arg-type]


async def test_nothing_is_lost_or_repeated_across_an_edge_restart(
    stack: RestartableStack, collectors: list[Collector]
) -> None:
    await stack.stack.acl.grant_membership("alice", "acme", "member")
    cache = LocalCache()
    collector = Collector(open_stream(stack, "alice", cache=cache))
    collectors.append(collector)
    await collector.offsets(1)
    before = [await stack.stack.page("acme", f"before-{n}") for n in range(3)]
    await collector.cursors(*before)

    port = await stack.stop_edge()
    await collector.until(lambda c: any(isinstance(e, Closed) and e.reason == "shutdown" for e in c.events))
    while_down = [await stack.stack.page("acme", f"down-{n}") for n in range(3)]
    await stack.start_edge(port)
    await collector.offsets(2)
    after = [await stack.stack.page("acme", f"after-{n}") for n in range(2)]
    await collector.cursors(*after)

    cursors = [change.cursor for change in collector.changes]
    assert cursors == [*before, *while_down, *after]
    assert [parse_cursor(c).sequence for c in cursors] == sorted(parse_cursor(c).sequence for c in cursors)
    resumed = [event for event in collector.events if isinstance(event, Offset)][1]
    assert resumed.resumed
    # The cache saw every entity once; the membership was granted before the stream began.
    assert cache.memberships == {}
    assert sorted(key[1] for key in cache.entities) == sorted(
        [*(f"before-{n}" for n in range(3)), *(f"down-{n}" for n in range(3)), *(f"after-{n}" for n in range(2))]
    )


async def test_must_refetch_calls_back_then_goes_live_from_now(
    stack: RestartableStack, collectors: list[Collector]
) -> None:
    await stack.stack.acl.grant_membership("bob", "acme", "member")
    head = await stack.stack.page("acme", "existing")
    refetched: list[str] = []

    async def refetch(reason: str) -> None:
        refetched.append(reason)

    cache = LocalCache(memberships={"stale": "member"})
    ahead = str(int(head) + 1000)  # well formed, ahead of the log's head: cursor-unknown
    collector = Collector(open_stream(stack, "bob", offset=ahead, on_must_refetch=refetch, cache=cache))
    collectors.append(collector)
    await collector.offsets(1)
    assert refetched == ["cursor-unknown"]
    assert cache.memberships == {}
    first, second = collector.events[:2]
    assert first == MustRefetch("cursor-unknown")
    assert isinstance(second, Offset)
    assert not second.resumed
    live = await stack.stack.page("acme", "after-refetch")
    await collector.cursors(live)
    assert [change.cursor for change in collector.changes] == [live]


async def test_an_expired_token_is_refreshed_and_the_stream_resumes(
    stack: RestartableStack, collectors: list[Collector]
) -> None:
    await stack.stack.acl.grant_membership("carol", "globex", "admin")
    refreshes: list[float] = []

    def refresh() -> str:
        refreshes.append(time.time())
        return issue_token("carol", SECRET, 3600)

    short = issue_token("carol", SECRET, 1.5)
    stream = UserStream(stack.base_url, short, reconnect=FAST, refresh_token=refresh)
    collector = Collector(stream)
    collectors.append(collector)
    await collector.offsets(1)
    first = await stack.stack.page("globex", "one")
    await collector.until(lambda c: any(isinstance(e, Closed) and e.reason == "token-expired" for e in c.events))
    missed = await stack.stack.page("globex", "two")
    await collector.offsets(2)
    last = await stack.stack.page("globex", "three")
    await collector.cursors(last)
    assert [change.cursor for change in collector.changes] == [first, missed, last]
    assert len(refreshes) == 1


async def test_echoes_of_own_writes_are_skipped_but_advance_the_cursor(
    stack: RestartableStack, collectors: list[Collector]
) -> None:
    from userstream.events.model import Tx

    await stack.stack.acl.grant_membership("dave", "acme", "member")
    collector = Collector(open_stream(stack, "dave", source_id="tab-1"))
    collectors.append(collector)
    await collector.offsets(1)
    echo = await stack.stack.page("acme", "mine", tx=Tx(source_id="tab-1"))
    other = await stack.stack.page("acme", "theirs", tx=Tx(source_id="tab-2"))
    await collector.cursors(other)
    assert [change.cursor for change in collector.changes] == [other]
    assert collector.stream.cursor == other
    assert echo != other


async def test_close_from_another_task_ends_the_iteration(stack: RestartableStack) -> None:
    stream = open_stream(stack, "erin")
    received: list[StreamEvent] = []
    first = asyncio.Event()

    async def iterate() -> None:
        async for event in stream:
            received.append(event)  # the test watches it grow
            first.set()

    task = asyncio.get_running_loop().create_task(iterate())
    await asyncio.wait_for(first.wait(), 10)
    await stream.close()
    await asyncio.wait_for(task, 5)
    assert isinstance(received[0], Offset)


async def test_a_session_without_a_token_reconnects_when_it_expires(
    nats_server: NatsServerProcess, collectors: list[Collector]
) -> None:
    sessions: list[float] = []

    def answer(headers: dict[str, str]) -> tuple[int, object]:
        if "session=s-dave" not in headers.get("cookie", ""):
            return 401, {}
        sessions.append(time.time())
        return 200, {"user_id": "dave", "expires_at": time.time() + 1.5}

    hook = await FixtureServer(HookAnswers(answer)).start()
    edge_env = {"AUTH_HOOK_URL": hook.url, "AUTH_HOOK_CACHE_TTL": "0", "RETRY_MS": "50"}
    running = await start_stack(nats_server.url, edge_env=edge_env)
    try:
        await running.acl.grant_membership("dave", "initech", "member")
        http = httpx.AsyncClient(cookies={"session": "s-dave"}, timeout=httpx.Timeout(5.0, read=10.0))
        stream = UserStream(running.base_url, None, reconnect=FAST, http=http)
        collector = Collector(stream)
        collectors.append(collector)
        await collector.offsets(1)
        first = await running.page("initech", "one")
        await collector.until(lambda c: any(isinstance(e, Closed) and e.reason == "token-expired" for e in c.events))
        missed = await running.page("initech", "two")
        await collector.offsets(2)
        last = await running.page("initech", "three")
        await collector.cursors(last)
        assert [change.cursor for change in collector.changes] == [first, missed, last]
        assert len(sessions) >= 2
        await collector.close()
        await http.aclose()
    finally:
        await running.stop()
        await hook.stop()
