"""CONTRACT §6, the session hook, with a real hook server: every answer, timeouts, bypass, expiry, storms, origins,
and the worker's pooled HTTP client against a raw server: kept-alive connections, closed ones, answers that are not
HTTP or too long."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.integration.edge.conftest import StackFactory
from tests.support.auth import FixtureServer, HookAnswers, session_of
from tests.support.sse import SSEStream, open_stream, request, request_error
from tests.support.stack import Stack
from userstream.edge.session_hook import MAX_ANSWER_BYTES

pytestmark = pytest.mark.integration

BROWSER = {"Cookie": "session=s-alice; theme=dark", "User-Agent": "test-browser/1.0", "X-Forwarded-For": "10.0.0.7"}


async def _start(make_stack: StackFactory, answers: HookAnswers, **env: str) -> tuple[Stack, FixtureServer]:
    hook = await FixtureServer(answers).start()
    stack = await make_stack(edge_env={"AUTH_HOOK_URL": hook.url, **env})
    return stack, hook


async def _status(stack: Stack, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    result = await request(stack.base_url, "/me/stream", headers=headers)
    if isinstance(result, SSEStream):
        await result.close()
        return result.response.status, result.response.headers, b""
    return result.status, result.headers, result.body


async def test_a_session_opens_its_users_stream_and_the_hook_sees_only_the_allowed_headers(
    make_stack: StackFactory,
) -> None:
    stack, hook = await _start(make_stack, HookAnswers(session_of({"s-alice": "alice"})))
    try:
        await stack.acl.grant_membership("alice", "acme", "member")
        stream = await open_stream(stack.base_url, headers={**BROWSER, "X-Secret-Header": "no", "Accept-Language": "x"})
        try:
            assert (await stream.next_event()).event == "offset"
            cursor = await stack.page("acme", "p1")
            (change,) = await stream.changes(1)
            assert change.id == cursor
        finally:
            await stream.close()
        method, headers, body = hook.requests[0]
        assert method == "POST"
        assert headers["content-type"] == "application/json"
        assert json.loads(body) == {
            "headers": {"cookie": "session=s-alice; theme=dark", "user-agent": "test-browser/1.0",
                        "x-forwarded-for": "10.0.0.7"}
        }  # fmt: skip
    finally:
        await hook.stop()


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, {"error": "no"}, 401),
        (403, b"", 401),
        (500, {"user_id": "alice", "expires_at": None}, 503),
        (502, b"bad gateway", 503),
        (302, b"", 503),
        (404, b"", 503),
        (201, {"user_id": "alice", "expires_at": None}, 503),
        (200, b"not json", 503),
        (200, b"", 503),
        (200, [], 503),
        (200, {"user": "alice"}, 503),
        (200, {"user_id": "alice"}, 503),
        (200, {"user_id": "al ice", "expires_at": None}, 503),
        (200, {"user_id": "", "expires_at": None}, 503),
        (200, {"user_id": 42, "expires_at": None}, 503),
        (200, {"user_id": "alice", "expires_at": "tomorrow"}, 503),
        (200, {"user_id": "alice", "expires_at": True}, 503),
        (200, {"user_id": "alice", "expires_at": 1.0}, 401),  # long past: the session is over
        (200, {"user_id": "alice", "expires_at": None}, 200),
        (200, {"user_id": "alice", "expires_at": 4102444800}, 200),
    ],
)
async def test_every_hook_answer(make_stack: StackFactory, status: int, body: Any, expected: int) -> None:
    stack, hook = await _start(make_stack, HookAnswers(lambda _: (status, body)))
    try:
        got, headers, payload = await _status(stack, BROWSER)
        assert got == expected, payload
        if expected == 503:
            assert headers.get("retry-after", "").isdigit()
            assert json.loads(payload)["error"]["code"] == "unavailable"
        if expected == 401:
            assert json.loads(payload)["error"]["code"] == "unauthorized"
    finally:
        await hook.stop()


async def test_a_hook_too_slow_or_unreachable_is_503(make_stack: StackFactory) -> None:
    slow = HookAnswers(session_of({"s-alice": "alice"}), delay=1.0)
    stack, hook = await _start(make_stack, slow, AUTH_HOOK_TIMEOUT="0.2")
    started = time.monotonic()
    status, headers, _ = await _status(stack, BROWSER)
    assert status == 503
    assert "retry-after" in headers
    assert time.monotonic() - started < 0.9, "the edge waited past its timeout"
    await hook.stop()
    status, headers, _ = await _status(stack, BROWSER)
    assert status == 503
    assert "retry-after" in headers


async def test_tokens_never_reach_the_hook(make_stack: StackFactory) -> None:
    stack, hook = await _start(make_stack, HookAnswers(session_of({"s-alice": "alice"})))
    try:
        assert (await _status(stack, {**BROWSER, **stack.auth("bob")}))[0] == 200
        assert (await _status(stack, {**BROWSER, "Authorization": "Bearer not-a-token"}))[0] == 401
        assert (await _status(stack, {**BROWSER, "Authorization": "Basic YTpi"}))[0] == 401
        assert (await _status(stack, {"Cookie": "userstream_token=garbage; session=s-alice"}))[0] == 401
        query = await request_error(stack.base_url, query={"access_token": "garbage"}, headers=BROWSER)
        assert query.status == 401
        assert hook.requests == []
        assert (await _status(stack, {"Cookie": "session=unknown"}))[0] == 401  # the hook's own 401
        assert len(hook.requests) == 1
    finally:
        await hook.stop()


async def test_the_stream_ends_at_the_sessions_expires_at(make_stack: StackFactory) -> None:
    expires_at = int(time.time()) + 2
    answers = HookAnswers(lambda _: (200, {"user_id": "alice", "expires_at": expires_at}))
    stack, hook = await _start(make_stack, answers)
    try:
        stream = await open_stream(stack.base_url, headers=BROWSER)
        try:
            events = await stream.read_to_end(timeout=6)
            closed_at = time.time()
        finally:
            await stream.close()
        assert events[-1].event == "close"
        assert events[-1].json() == {"reason": "token-expired"}
        assert expires_at - 0.1 <= closed_at < expires_at + 1.5
    finally:
        await hook.stop()


async def test_a_storm_of_the_same_session_shares_calls_and_the_rest_is_bounded(make_stack: StackFactory) -> None:
    users = {f"s-{i}": f"user{i}" for i in range(30)}
    answers = HookAnswers(session_of(users), delay=0.05)
    stack, hook = await _start(make_stack, answers, AUTH_HOOK_CONCURRENCY="4", AUTH_HOOK_CACHE_TTL="0")
    try:
        same = await asyncio.gather(*(_status(stack, {"Cookie": "session=s-0"}) for _ in range(8)))
        assert {status for status, _, _ in same} == {200}
        assert len(hook.requests) < 4, "identical sessions in flight did not share a call"
        distinct = await asyncio.gather(*(_status(stack, {"Cookie": f"session={s}"}) for s in users))
        assert {status for status, _, _ in distinct} == {200}
        assert hook.max_in_flight <= 4
    finally:
        await hook.stop()


async def test_a_200_is_reused_within_the_cache_ttl(make_stack: StackFactory) -> None:
    stack, hook = await _start(make_stack, HookAnswers(session_of({"s-alice": "alice"})), AUTH_HOOK_CACHE_TTL="60")
    try:
        for _ in range(3):
            assert (await _status(stack, BROWSER))[0] == 200
        assert len(hook.requests) == 1
        assert (await _status(stack, {**BROWSER, "User-Agent": "another"}))[0] == 200  # other headers: asked again
        assert len(hook.requests) == 2
    finally:
        await hook.stop()


async def test_cross_origin_sessions_only_from_allowed_origins(make_stack: StackFactory) -> None:
    answers = HookAnswers(session_of({"s-alice": "alice"}))
    stack, hook = await _start(make_stack, answers, CORS_ORIGINS="https://app.example")
    try:
        status, headers, _ = await _status(stack, {**BROWSER, "Origin": "https://app.example"})
        assert status == 200
        assert headers.get("access-control-allow-origin") == "https://app.example"
        assert headers.get("access-control-allow-credentials") == "true"
        assert json.loads(hook.requests[-1][2])["headers"]["origin"] == "https://app.example"
        calls = len(hook.requests)
        refused = await request_error(stack.base_url, headers={**BROWSER, "Origin": "https://evil.example"})
        assert refused.status == 401
        assert len(hook.requests) == calls, "the hook was asked about a foreign origin's cookie"
        same_origin = stack.base_url  # the edge's own page (the demo) may send its own origin
        assert (await _status(stack, {**BROWSER, "Origin": same_origin}))[0] == 200
    finally:
        await hook.stop()


# -- the pooled client against a raw HTTP/1.1 server --------------------------------------------------------

ALICE = b'{"user_id": "alice", "expires_at": null}'
OK_ALICE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(ALICE), ALICE)


class RawHook:
    """Answers each request with ``answer(index)`` bytes, closing the connection after it when ``close_after`` says
    so (without `Connection: close`, as a server's idle timeout does); counts connections and requests."""

    def __init__(self, answer: Callable[[int], bytes], close_after: Callable[[int], bool]) -> None:
        self.answer, self.close_after = answer, close_after
        self.requests = 0
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                index, self.requests = self.requests, self.requests + 1
                writer.write(self.answer(index))
                await writer.drain()
                if self.close_after(index):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook?x=1"


@pytest.fixture
async def raw_hook() -> AsyncIterator[Callable[..., Any]]:
    servers: list[asyncio.Server] = []

    async def start(answer: Callable[[int], bytes], close_after: Callable[[int], bool] = lambda _: False) -> RawHook:
        raw = RawHook(answer, close_after)
        raw.server = await asyncio.start_server(raw.serve, "127.0.0.1", 0)
        servers.append(raw.server)
        return raw

    yield start
    for server in servers:
        server.close()


async def test_calls_in_turn_share_one_kept_alive_connection(make_stack: StackFactory, raw_hook: Any) -> None:
    hook = await raw_hook(lambda _: OK_ALICE)
    stack = await make_stack(edge_env={"AUTH_HOOK_URL": hook.url, "AUTH_HOOK_CACHE_TTL": "0"})
    for _ in range(5):
        assert (await _status(stack, BROWSER))[0] == 200
    assert hook.requests == 5
    assert hook.connections == 1


async def test_connections_the_hook_closes_after_each_answer_are_replaced(
    make_stack: StackFactory, raw_hook: Any
) -> None:
    hook = await raw_hook(lambda _: OK_ALICE, close_after=lambda _: True)
    stack = await make_stack(edge_env={"AUTH_HOOK_URL": hook.url, "AUTH_HOOK_CACHE_TTL": "0"})
    for _ in range(3):
        assert (await _status(stack, BROWSER))[0] == 200
    assert hook.requests == 3


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage, not HTTP\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + ALICE,
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_ANSWER_BYTES + 1) + b" " * MAX_ANSWER_BYTES + ALICE,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%s\r\n" % (MAX_ANSWER_BYTES, b" " * MAX_ANSWER_BYTES)
        + b"%x\r\n%s\r\n0\r\n\r\n" % (len(ALICE), ALICE),
    ],
    ids=["not-http", "truncated", "too-long", "too-long-chunked"],
)
async def test_an_answer_that_is_not_complete_http_or_too_long_is_503(
    make_stack: StackFactory, raw_hook: Any, answer: bytes
) -> None:
    hook = await raw_hook(lambda _: answer, close_after=lambda _: True)
    stack = await make_stack(edge_env={"AUTH_HOOK_URL": hook.url})
    status, headers, payload = await _status(stack, BROWSER)
    assert status == 503, payload
    assert headers.get("retry-after", "").isdigit()
    assert json.loads(payload)["error"]["code"] == "unavailable"
