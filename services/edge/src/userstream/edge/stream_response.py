"""The ASGI response of one stream: starts it, hands the socket to the connection's outbox, waits for the end."""

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
# Said explicitly so uvicorn frames the body in chunks, as the outbox's direct writes do.
CHUNKED = (b"transfer-encoding", b"chunked")


class EventStream:
    """Returned by the stream handlers; Litestar runs it as the response's ASGI app.

    Either a live stream (``connection``) or, for a cursor the log cannot
    resume from, just ``retry:`` and ``must-refetch``. A live stream's frames
    are written by its outbox (``outbox.py``); this coroutine only waits for
    the response to end — the client going away, or the outbox completing the
    response after a `close`.
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
        connection = self._connection
        extensions: dict[str, Any] = scope.get("extensions") or {}
        transport: asyncio.Transport | None = extensions.get(TRANSPORT_KEY)
        if scope.get("http_version") != "1.1":
            transport = None  # direct writes frame HTTP/1.1 chunks; anything else goes through `send`
        # A fresh list per response: middleware (CORS) edits it in place, and a shared one would
        # carry one client's Access-Control-Allow-Origin to every later stream.
        headers = [*HEADERS, CHUNKED] if transport is not None else list(HEADERS)
        start: HTTPResponseStartEvent = {"type": "http.response.start", "status": 200, "headers": headers}
        await send(start)
        preamble = sse.retry_frame(self._retry_ms)
        if connection is None or self._registry is None:
            reason = self._refetch_reason or "cursor-unknown"
            await send(
                {"type": "http.response.body", "body": preamble + sse.must_refetch_frame(reason), "more_body": False}
            )
            return
        self._registry.writer_started(connection, transport)
        try:
            await send({"type": "http.response.body", "body": preamble, "more_body": True})
            connection.outbox.attach(send, transport)
            while (await receive())["type"] != "http.disconnect":
                pass
        finally:
            connection.end()
            drainer = connection.outbox.drainer
            if drainer is not None:
                drainer.cancel()
            self._registry.writer_finished(connection)
