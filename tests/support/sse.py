"""A raw-socket HTTP/1.1 + Server-Sent Events client for tests: it sees exactly the bytes the edge sends.

Litestar's test clients hang on infinite streams and hide the framing; this
parses the status line, headers, chunked encoding and SSE fields itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode


@dataclass
class SSEEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class HTTPResponse:
    status: int
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class SSEStream:
    """An open stream: read events one by one with ``next_event``."""

    response: HTTPResponse
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    chunked: bool
    _buffer: bytearray = field(default_factory=bytearray)
    _scan: int = 0
    _chunk_left: int = 0
    # Every byte of the body as received; off for long streams (tens of MB).
    keep_raw: bool = True
    retry: int | None = None
    last_event_id: str | None = None
    ended: bool = False
    raw: bytearray = field(default_factory=bytearray)

    async def next_event(self, timeout: float = 5.0) -> SSEEvent:
        """The next dispatched event (``retry:``-only blocks are recorded in ``retry``). EOFError at the end."""
        return await asyncio.wait_for(self._next_event(), timeout)

    async def events_until(self, predicate: Any, timeout: float = 10.0) -> list[SSEEvent]:
        """Events up to and including the first one for which ``predicate(event)`` holds."""
        collected: list[SSEEvent] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"predicate not met; got {[(e.event, e.id) for e in collected]}")
            event = await self.next_event(remaining)
            collected.append(event)
            if predicate(event):
                return collected

    async def changes(self, count: int, timeout: float = 10.0) -> list[SSEEvent]:
        """The next ``count`` change events (pings skipped)."""
        found: list[SSEEvent] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"got {len(found)} of {count} changes")
            event = await self.next_event(remaining)
            if event.event == "change":
                found.append(event)
        return found

    async def no_change_within(self, seconds: float) -> None:
        """Assert that nothing but pings arrives for ``seconds``."""
        try:
            while True:
                event = await self.next_event(seconds)
                if event.event != "ping":
                    raise AssertionError(f"unexpected {event.event} {event.id} {event.data}")
        except TimeoutError:
            return

    async def read_to_end(self, timeout: float = 5.0) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        try:
            while True:
                events.append(await self.next_event(timeout))
        except EOFError:
            return events

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    async def __aenter__(self) -> SSEStream:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def change_ids_until(self, last: str, timeout: float = 10.0) -> list[str]:
        """The ids of change events up to and including the one with id ``last``."""
        events = await self.events_until(lambda event: event.id == last, timeout)
        return [event.id or "" for event in events if event.event == "change"]

    async def _next_event(self) -> SSEEvent:
        event = SSEEvent()
        has_data = False
        data_lines: list[str] = []
        while True:
            line = await self._line()
            if line == "":
                if has_data:
                    event.data = "\n".join(data_lines)
                    if event.id is not None:
                        self.last_event_id = event.id
                    return event
                if event.retry is not None:
                    self.retry = event.retry
                event, has_data, data_lines = SSEEvent(), False, []
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event.event = value
            elif name == "data":
                has_data = True
                data_lines.append(value)
            elif name == "id":
                event.id = value
            elif name == "retry" and value.isdigit():
                event.retry = int(value)

    async def _line(self) -> str:
        # An index into one buffer, compacted now and then: tens of MB parse in linear time.
        while True:
            end = self._buffer.find(b"\n", self._scan)
            if end >= 0:
                break
            chunk = await self._read_body()
            if not chunk:
                self.ended = True
                raise EOFError("the stream ended")
            if self._scan > 65536:
                del self._buffer[: self._scan]
                self._scan = 0
            self._buffer += chunk
        line = self._buffer[self._scan : end].decode()
        self._scan = end + 1
        return line.removesuffix("\r")

    async def _read_body(self) -> bytes:
        if not self.chunked:
            data = await self.reader.read(65536)
            if self.keep_raw:
                self.raw += data
            return data
        if self._chunk_left == 0:
            size_line = await self.reader.readline()
            if not size_line:
                return b""
            size = int(size_line.strip() or b"0", 16)
            if size == 0:
                await self.reader.readline()
                return b""
            self._chunk_left = size
        data = await self.reader.read(min(self._chunk_left, 65536))
        if not data:
            return b""
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            await self.reader.readexactly(2)
        if self.keep_raw:
            self.raw += data
        return data


async def request(
    base_url: str,
    path: str,
    *,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
    method: str = "GET",
    receive_buffer: int | None = None,
) -> SSEStream | HTTPResponse:
    """``method`` ``path``: a 200 event stream comes back open (SSEStream), anything else read whole.

    ``receive_buffer`` shrinks the socket's kernel receive buffer (a reader that stalls then
    stops the flow within a few KB instead of megabytes).
    """
    host, port = base_url.removeprefix("http://").rstrip("/").split(":")
    target = path + ("?" + urlencode(query) if query else "")
    if receive_buffer is None:
        connecting = asyncio.open_connection(host, int(port))
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        connecting = asyncio.open_connection(sock=sock, limit=receive_buffer)
    reader, writer = await asyncio.wait_for(connecting, timeout)
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), timeout)
    status = int(status_line.split()[1])
    response_headers: dict[str, str] = {}
    while True:
        line = (await asyncio.wait_for(reader.readline(), timeout)).decode().rstrip("\r\n")
        if not line:
            break
        name, _, value = line.partition(":")
        response_headers[name.strip().lower()] = value.strip()
    response = HTTPResponse(status, response_headers)
    chunked = response_headers.get("transfer-encoding", "").lower() == "chunked"
    if status == 200 and response_headers.get("content-type", "").startswith("text/event-stream"):
        return SSEStream(response, reader, writer, chunked)
    if "content-length" in response_headers:
        response.body = await asyncio.wait_for(reader.readexactly(int(response_headers["content-length"])), timeout)
    elif chunked:
        stream = SSEStream(response, reader, writer, chunked)
        body = bytearray()
        while chunk := await asyncio.wait_for(stream._read_body(), timeout):
            body += chunk
        response.body = bytes(body)
    writer.close()
    return response


async def open_stream(base_url: str, path: str = "/me/stream", **kwargs: Any) -> SSEStream:
    result = await request(base_url, path, **kwargs)
    if not isinstance(result, SSEStream):
        raise AssertionError(f"expected an event stream, got {result.status} {result.body!r}")  # noqa: TRY004  # a test failure
    return result


async def request_error(base_url: str, path: str = "/me/stream", **kwargs: Any) -> HTTPResponse:
    """GET ``path`` expecting an error response, not a stream."""
    result = await request(base_url, path, **kwargs)
    if isinstance(result, SSEStream):
        await result.close()
        raise AssertionError(f"expected an error, got a stream from {path}")  # noqa: TRY004  # a test failure
    return result


async def open_stream_retrying(
    base_url: str, path: str = "/me/stream", timeout: float = 15.0, **kwargs: Any
) -> SSEStream:
    """Open a stream as a client would: retrying while the edge answers 503 (Retry-After)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await request(base_url, path, **kwargs)
        if isinstance(result, SSEStream):
            return result
        if result.status != 503 or asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"expected an event stream, got {result.status} {result.body!r}")
        await asyncio.sleep(0.1)
