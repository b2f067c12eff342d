"""The ASGI response of one stream: writes whatever its connection has queued, coalesced, until it ends."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from litestar.types import HTTPResponseStartEvent, Receive, Scope, Send
from userstream.edge import sse
from userstream.edge.connection import Connection

if TYPE_CHECKING:
    from userstream.edge.registry import StreamRegistry

TRANSPORT_KEY = "userstream.transport"
HEADERS = (
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)


class EventStream:
    """Returned by the stream handlers; Litestar runs it as the response's ASGI app.

    Either a live stream (``connection``) or, for a cursor the log cannot
    resume from, just ``retry:`` and ``must-refetch``.
    """

    def __init__(
        self,
        *,
        retry_ms: int,
        connection: Connection | None = None,
        registry: StreamRegistry | None = None,
        refetch_reason: str | None = None,
    ) -> None:
        self._retry_ms = retry_ms
        self._connection = connection
        self._registry = registry
        self._refetch_reason = refetch_reason

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A fresh list per response: middleware (CORS) edits it in place, and a shared one would
        # carry one client's Access-Control-Allow-Origin to every later stream.
        start: HTTPResponseStartEvent = {"type": "http.response.start", "status": 200, "headers": list(HEADERS)}
        await send(start)
        preamble = sse.retry_frame(self._retry_ms)
        connection = self._connection
        if connection is None or self._registry is None:
            reason = self._refetch_reason or "cursor-unknown"
            await send(
                {"type": "http.response.body", "body": preamble + sse.must_refetch_frame(reason), "more_body": False}
            )
            return
        extensions: dict[str, Any] = scope.get("extensions") or {}
        connection_transport = extensions.get(TRANSPORT_KEY)
        self._registry.writer_started(connection, connection_transport)
        watcher = asyncio.get_running_loop().create_task(_watch_disconnect(receive, connection))
        try:
            await send({"type": "http.response.body", "body": preamble, "more_body": True})
            await _write_until_closed(connection, send)
        finally:
            watcher.cancel()
            connection.end()
            self._registry.writer_finished(connection)


async def _write_until_closed(connection: Connection, send: Send) -> None:
    wakeup = connection.wakeup
    while True:
        if connection.buffer:
            await send({"type": "http.response.body", "body": connection.take(), "more_body": True})
            continue
        if connection.closed:
            break
        wakeup.clear()
        await wakeup.wait()
    if connection.close_reason != "disconnected":
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _watch_disconnect(receive: Receive, connection: Connection) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            connection.end()
            return
