"""What waits to be written to one stream, and how it reaches the socket.

Frames are appended by the fan-out path and written once per event-loop
iteration for every stream that has something new (``Hub.flush``), as one
HTTP/1.1 chunk written straight to the transport. The ASGI ``send`` path (a
coroutine per write, a task wake-up, the middleware chain) cost two thirds of
the edge's CPU per delivery; writing directly removes it (docs/benchmarks.md,
"Profile"). When the client is behind — the transport still holds bytes — the
stream switches to an asynchronous drain through ASGI ``send``, which waits
for the socket to drain, until the transport is empty again.

The response head, the first frame and the final chunk always go through ASGI
``send``, so uvicorn's view of the response (chunked, complete) stays true.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from litestar.types import Send

if TYPE_CHECKING:
    from userstream.edge.hub import Hub


class Outbox:
    __slots__ = (
        "_on_taken",
        "buffer",
        "buffered",
        "dirty",
        "drainer",
        "ending",
        "hub",
        "send",
        "since",
        "transport",
    )

    def __init__(self, hub: Hub, on_taken: Callable[[], None]) -> None:
        self.hub = hub
        self._on_taken = on_taken
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.dirty = False
        # Set once the response has started: `transport` for direct writes (None: always through `send`).
        self.send: Send | None = None
        self.transport: asyncio.Transport | None = None
        self.drainer: asyncio.Task[None] | None = None
        self.ending = False
        # When the oldest live event still waiting here was stored (the hub sets it; None: nothing live waits).
        self.since: float | None = None

    def append(self, frame: bytes) -> None:
        self.buffer.append(frame)
        self.buffered += len(frame)
        if not self.dirty:
            self.dirty = True
            self.hub.mark_dirty(self)

    def clear(self) -> None:
        self.buffer.clear()
        self.buffered = 0
        self.since = None

    def take(self) -> bytes:
        """Everything queued, as one write; the connection may queue its next page of a catch-up meanwhile."""
        chunk = b"".join(self.buffer)
        self.buffer.clear()
        self.buffered = 0
        self._on_taken()
        return chunk

    def attach(self, send: Send, transport: asyncio.Transport | None) -> None:
        """The response has started: from now on queued frames are written."""
        self.send = send
        self.transport = transport
        self.flush()

    def end(self) -> None:
        """Write what is queued, then finish the response (the stream is closed)."""
        self.ending = True
        if not self.dirty:
            self.dirty = True
            self.hub.mark_dirty(self)

    def flush(self) -> None:
        """Write what is queued: directly if the socket keeps up, else by an asynchronous drain."""
        self.dirty = False
        if self.send is None or self.drainer is not None:
            return  # not started yet (attach flushes), or the drain takes everything in order
        transport = self.transport
        if transport is None or transport.get_write_buffer_size():
            if self.buffer or self.ending:
                self._start_drain()
            return
        if self.buffer:
            data = self.take()
            if not transport.is_closing():  # else the client is gone: nothing to write to
                transport.write(b"%x\r\n%b\r\n" % (len(data), data))
            self.since = None
        if self.ending and not self.buffer:
            self._start_drain()  # only the final chunk is left

    def _start_drain(self) -> None:
        self.drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        """Write through ASGI `send`, which waits while the socket is full; then back to direct writes."""
        send = self.send
        assert send is not None
        try:
            while self.buffer:
                await send({"type": "http.response.body", "body": self.take(), "more_body": True})
            self.since = None
            if self.ending:
                # Completes the response: uvicorn then answers the response's `receive()` with a disconnect.
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.drainer = None
