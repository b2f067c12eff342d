"""A user's stream as an async iterator that survives disconnects without losing or repeating events.

    async with UserStream("http://127.0.0.1:8000", token, refresh_token=fetch_token) as stream:
        async for event in stream:
            if isinstance(event, Change):
                ...

What it does for the caller (CONTRACT §5):

- resumes after any disconnect from the last cursor it received (``Last-Event-ID``),
  so every event arrives once, in order;
- reconnects with exponential backoff and jitter, or when the server says
  (``retry:`` on ``close``, ``Retry-After`` on 503);
- on ``close`` (``token-expired``) and on 401 asks ``refresh_token`` for a new token;
  with no token at all (``token=None``: the edge's session hook authenticates the
  client's cookies, e.g. ``http=httpx.AsyncClient(cookies=...)``) a
  ``token-expired`` close simply reconnects, and a 401 ends the stream;
- on ``must-refetch`` yields ``MustRefetch``, awaits ``on_must_refetch`` (reload
  your state there), clears the attached cache, and restarts at ``now``;
- skips the echoes of writes that carried ``source_id``, if given, and keeps
  ``cache`` (a ``LocalCache``) applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from enum import StrEnum
from types import TracebackType

import httpx
import structlog

from userstream.client._sse import SseDecoder
from userstream.client.backoff import ReconnectPolicy
from userstream.client.cache import LocalCache
from userstream.client.errors import AuthenticationError, StreamError
from userstream.client.events import Change, Closed, MustRefetch, Offset, StreamEvent, decode_event

log = structlog.get_logger("userstream.client")

TokenRefresher = Callable[[], Awaitable[str] | str]
RefetchCallback = Callable[[str], Awaitable[None] | None]
NOW = "now"
_TOKEN_EXPIRED = "token-expired"  # noqa: S105  # a close reason, not a secret
_FATAL_STATUSES = frozenset({400, 403, 404, 405, 410})


class State(StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class _Reconnect(Exception):  # noqa: N818  # control flow, not an error
    """End this connection and connect again after ``delay`` seconds (None: the backoff decides)."""

    def __init__(self, why: str, delay: float | None = None) -> None:
        super().__init__(why)
        self.delay = delay


class UserStream:
    """The unified stream of one user. Iterate it (once); ``close()`` (or ``async with``) ends it."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        offset: str = NOW,
        refresh_token: TokenRefresher | None = None,
        on_must_refetch: RefetchCallback | None = None,
        source_id: str | None = None,
        cache: LocalCache | None = None,
        reconnect: ReconnectPolicy | None = None,
        path: str = "/me/stream",
        http: httpx.AsyncClient | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + path
        self.cursor: str | None = None if offset == NOW else offset
        self.state = State.CONNECTING
        self.cache = cache
        self.connections = 0
        self._token = token
        self._refresh_token = refresh_token
        self._on_must_refetch = on_must_refetch
        self._source_id = source_id
        self._policy = reconnect or ReconnectPolicy()
        self._rng = rng or random.Random()  # noqa: S311  # jitter, not security
        self._own_http = http is None
        timeout = httpx.Timeout(self._policy.connect_timeout, read=self._policy.idle_timeout)
        self._http = http or httpx.AsyncClient(timeout=timeout)
        self._events: AsyncIterator[StreamEvent] | None = None

    # -- iteration --------------------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        if self._events is None:
            self._events = self._run()
        return self._events

    async def __aenter__(self) -> UserStream:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    def _is_closed(self) -> bool:
        # A call, not the property: mypy would narrow the property from one check to the next,
        # but close() may run in another task in between.
        return self.state is State.CLOSED

    async def close(self) -> None:
        """End the stream. From another task than the one iterating, that iteration ends too."""
        self.state = State.CLOSED
        if self._events is not None:
            # "already running": another task iterates; closing the HTTP client below ends its read.
            with contextlib.suppress(RuntimeError):
                await self._events.aclose()  # type: ignore[attr-defined]  # an async generator
        if self._own_http:
            await self._http.aclose()

    async def _run(self) -> AsyncIterator[StreamEvent]:
        failures = 0
        refreshed = False
        while not self._is_closed():
            delay: float | None = None
            try:
                async for event in self._connection():
                    if isinstance(event, Offset):
                        failures, refreshed = 0, False
                    yield event
            except _Reconnect as reconnect:
                delay = reconnect.delay
                log.info("client.reconnect", reason=str(reconnect), cursor=self.cursor)
            except AuthenticationError:
                if refreshed or self._refresh_token is None:
                    self.state = State.CLOSED
                    raise
                refreshed = True
                self._token = await self._fresh_token()
                delay = 0.0
            except (httpx.TransportError, httpx.StreamError) as error:
                if self._is_closed():
                    return  # close() from another task closed the client under this read
                log.info("client.disconnected", error=repr(error), cursor=self.cursor)
            except RuntimeError:
                if self._is_closed():
                    return  # the same, seen by the connection pool
                raise
            self.state = State.RECONNECTING
            if delay is None:
                failures += 1
                delay = self._policy.delay(failures, self._rng)
            await asyncio.sleep(delay)

    async def _connection(self) -> AsyncIterator[StreamEvent]:
        """One HTTP connection: its events until it ends, then _Reconnect (or a fatal StreamError)."""
        headers = {"Accept": "text/event-stream"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        params = {}
        if self.cursor is None:
            params["offset"] = NOW
        else:
            headers["Last-Event-ID"] = self.cursor
        self.connections += 1
        async with self._http.stream("GET", self.url, headers=headers, params=params) as response:
            if response.status_code != httpx.codes.OK:
                await self._refuse(response)
            decoder = SseDecoder()
            async for line in response.aiter_lines():
                message = decoder.feed(line)
                if message is None:
                    continue
                event = decode_event(message.event, message.data)
                if isinstance(event, Closed) and message.id:
                    # A `close` with an id rewinds the cursor (reason `resync`): resume from there.
                    self.cursor = message.id
                if event is None:
                    continue  # a ping, or an event kind newer than this SDK
                async for delivered in self._handle(event, decoder.retry):
                    yield delivered
        raise _Reconnect("the stream ended")

    async def _handle(self, event: StreamEvent, retry_ms: int | None) -> AsyncIterator[StreamEvent]:
        if isinstance(event, Change):
            self.cursor = event.cursor
            if self.cache is not None:
                self.cache.apply(event)
            if not event.is_echo_of(self._source_id):
                yield event
        elif isinstance(event, Offset):
            self.cursor = event.cursor
            self.state = State.LIVE
            yield event
        elif isinstance(event, MustRefetch):
            self.cursor = None
            if self.cache is not None:
                self.cache.clear()
            yield event
            if self._on_must_refetch is not None:
                result = self._on_must_refetch(event.reason)
                if inspect.isawaitable(result):
                    await result
            raise _Reconnect(f"must-refetch ({event.reason})", delay=0.0)
        elif isinstance(event, Closed):
            yield event
            if event.reason == _TOKEN_EXPIRED:
                if self._token is None and self._refresh_token is None:
                    # A session (cookies, the edge's session hook): the next connection asks the application again.
                    raise _Reconnect("token-expired (session)", delay=0.0)
                if self._refresh_token is None:
                    self.state = State.CLOSED
                    raise AuthenticationError("the token expired and no refresh_token callback was given", 401)
                self._token = await self._fresh_token()
                raise _Reconnect("token-expired", delay=0.0)
            hint = None if retry_ms is None else self._policy.jittered(retry_ms / 1000, self._rng)
            raise _Reconnect(f"closed by the server ({event.reason})", delay=hint)

    async def _refuse(self, response: httpx.Response) -> None:
        """Turn a non-200 answer into a retry (429, 5xx) or a StreamError (the rest)."""
        await response.aread()
        code, message = _error_of(response)
        status = response.status_code
        if status == httpx.codes.UNAUTHORIZED:
            raise AuthenticationError(f"the server refused the token: {message}", status, code)
        if status in _FATAL_STATUSES:
            raise StreamError(f"the server refused the stream ({status} {code}): {message}", status, code)
        retry_after = response.headers.get("retry-after", "")
        delay = self._policy.jittered(float(retry_after), self._rng) if retry_after.isdigit() else None
        raise _Reconnect(f"{status} {code}: {message}", delay=delay)

    async def _fresh_token(self) -> str:
        assert self._refresh_token is not None
        token = self._refresh_token()
        return await token if inspect.isawaitable(token) else token


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return "unknown", response.text[:200]
