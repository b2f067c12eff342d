"""The session hook's HTTP client: keep-alive POSTs to one URL over a small pool of connections.

Why not httpx: a reconnect storm through the hook is one POST per client, and
on this path httpx (over httpcore and anyio) costs 0.65 ms of CPU per call
sequentially and over 1.2 ms with 8 in flight (measured on loopback against a
server that answers instantly), more than the rest of a connect (~0.5 ms).
This client is asyncio's transport plus httptools' response parser (both
already under uvicorn), for exactly one request shape: a JSON POST, a small
answer, HTTP/1.1 keep-alive, http or https.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

MAX_RESPONSE_BYTES = 65_536


class HookConnectionError(Exception):
    """The request did not get a complete answer (no connection, dropped, malformed, too large)."""


@dataclass(frozen=True, slots=True)
class HookResponse:
    status: int
    body: bytes


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._body = bytearray()
        self._done: asyncio.Future[HookResponse] | None = None
        self._received = False
        self._keep_alive = False

    # -- asyncio.Protocol ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport (uvloop's is no subclass)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._done is not None and not self._done.done():
            self._done.set_exception(HookConnectionError("the connection closed before a full answer"))

    def data_received(self, data: bytes) -> None:
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(f"not an HTTP answer ({error})")

    # -- httptools callbacks -------------------------------------------------------------------------

    def on_body(self, body: bytes) -> None:
        self._body += body
        if len(self._body) > MAX_RESPONSE_BYTES:
            self._fail(f"an answer over {MAX_RESPONSE_BYTES} bytes")

    def on_message_complete(self) -> None:
        self._keep_alive = self._parser.should_keep_alive()
        if self._done is not None and not self._done.done():
            self._done.set_result(HookResponse(self._parser.get_status_code(), bytes(self._body)))

    # -- use -----------------------------------------------------------------------------------------

    @property
    def reusable(self) -> bool:
        return not self.closed and self._keep_alive

    async def send(self, request: bytes) -> tuple[HookResponse, bool]:
        """The answer, and whether any byte of it arrived (a reused connection that the server had closed
        gets none, and may be retried on a new one)."""
        assert self.transport is not None
        self._done = asyncio.get_running_loop().create_future()
        self._body.clear()
        self._received = self._keep_alive = False
        self._parser = httptools.HttpResponseParser(self)
        self.transport.write(request)
        try:
            return await self._done, True
        except HookConnectionError:
            self.close()
            if self._received:
                raise
            return HookResponse(0, b""), False

    def _fail(self, why: str) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(HookConnectionError(why))
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HookClient:
    """POSTs JSON to one URL. The caller bounds concurrency (and so the connections open at once)."""

    def __init__(self, url: str, *, max_idle: int) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._head = (
            f"POST {self._path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: userstream-edge\r\n"
            "Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: "
        ).encode()
        self._idle: deque[_Connection] = deque()
        self._max_idle = max_idle

    async def post(self, body: bytes) -> HookResponse:
        request = self._head + str(len(body)).encode() + b"\r\n\r\n" + body
        while self._idle:
            connection = self._idle.pop()
            if connection.closed:
                continue
            response, answered = await self._send(connection, request)
            if answered:
                return response
            # The server closed this idle connection meanwhile: nothing was processed, try a fresh one.
        response, answered = await self._send(await self._connect(), request)
        if not answered:
            raise HookConnectionError("the connection closed before an answer")
        return response

    async def _send(self, connection: _Connection, request: bytes) -> tuple[HookResponse, bool]:
        try:
            response, answered = await connection.send(request)
        except BaseException:
            connection.close()  # cancelled (timeout) or failed mid-answer: never reused
            raise
        if answered and connection.reusable and len(self._idle) < self._max_idle:
            self._idle.append(connection)
        elif answered:
            connection.close()
        return response, answered

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                _Connection, self._host, self._port, ssl=self._ssl, server_hostname=self._host if self._ssl else None
            )
        except OSError as error:
            raise HookConnectionError(f"cannot connect ({error.strerror or type(error).__name__})") from None
        return connection

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
