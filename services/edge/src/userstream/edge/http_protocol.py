"""uvicorn's httptools protocol with the limits it lacks: a header deadline, a header size, a small send buffer.

uvicorn's httptools protocol closes an idle connection only after a response
(keep-alive): a socket that connects and never completes its request line and
headers — one byte at a time, or nothing at all — holds a file descriptor and
memory for ever, and a request's headers may be of any size. This subclass

- gives every request ``header_timeout`` seconds, from the connection (or the
  previous response) to the end of its headers, then closes the connection;
- answers ``431`` and closes once the request line and headers pass
  ``max_header_bytes``;
- sets ``SO_SNDBUF`` on each accepted socket to ``socket_send_buffer``, so a
  client that stops reading fills the kernel's buffer after kilobytes, not
  megabytes, and the edge's queue limit cuts it off on time.

The limits are class attributes set once per process from the edge's settings
(``configure``), before uvicorn builds any protocol: uvicorn instantiates the
class itself, in every worker process.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from userstream.edge.settings import EdgeSettings

_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n\r\n%b"
)
_TOO_LARGE_BODY = b'{"error":{"code":"headers_too_large","message":"the request line and headers are too large"}}'


class _HeadTooLargeError(Exception):
    """Raised from a parser callback: httptools stops, uvicorn answers through ``send_400_response``."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout: float = EdgeSettings.header_timeout
    max_header_bytes: int = EdgeSettings.max_header_bytes
    socket_send_buffer: int = EdgeSettings.socket_send_buffer

    @classmethod
    def configure(cls, settings: EdgeSettings) -> None:
        cls.header_timeout = settings.header_timeout
        cls.max_header_bytes = settings.max_header_bytes
        cls.socket_send_buffer = settings.socket_send_buffer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._head_too_large = False
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's
        super().connection_made(transport)
        if self.socket_send_buffer:
            sock: socket.socket | None = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.socket_send_buffer)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    # -- the head's deadline ------------------------------------------------------------------

    def _await_head(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # uvicorn armed its keep-alive timer: no pipelined request is waiting, the next head is due.
        if self.timeout_keep_alive_task is not None:
            self._await_head()

    # -- the head's size ------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # with ": " and CRLF, as on the wire
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_header_bytes:
            self._head_too_large = True
            raise _HeadTooLargeError

    def send_400_response(self, msg: str) -> None:
        if not self._head_too_large:
            super().send_400_response(msg)
            return
        self._cancel_head_timer()
        self.transport.write(_TOO_LARGE % (len(_TOO_LARGE_BODY), _TOO_LARGE_BODY))
        self.transport.close()
