"""HTTP handlers of the streams (CONTRACT §5). Thin: authenticate, read the start, open, return the stream."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from userstream.cursor import Cursor, CursorError, parse_cursor
from userstream.edge.errors import BadRequestError, GoneError
from userstream.edge.runtime import EdgeRuntime, Opened
from userstream.edge.stream_response import EventStream

NOW = "now"
AnyRequest = Request[Any, Any, Any]


def read_start(request: AnyRequest) -> Cursor | None:
    """``Last-Event-ID``, else ``offset``, else now; None means the head. Anything unreadable is 400."""
    header = request.headers.get("last-event-id")
    if header is not None:
        return _parse_start(header.strip(), "the Last-Event-ID header")
    if "offset" in request.query_params:
        return _parse_start(request.query_params.get("offset") or "", "the offset parameter")
    return None


def _parse_start(text: str, where: str) -> Cursor | None:
    if text == NOW:
        return None
    try:
        return parse_cursor(text)
    except CursorError as error:
        raise BadRequestError(f"{where} is not a cursor: {error}") from None


def _respond(runtime: EdgeRuntime, opened: Opened) -> EventStream:
    return EventStream(
        retry_ms=runtime.settings.retry_ms,
        connection=opened.connection,
        registry=runtime.registry,
        refetch_reason=opened.refetch_reason,
    )


@get("/me/stream")
async def me_stream(request: AnyRequest, runtime: NamedDependency[EdgeRuntime]) -> EventStream:
    """The signed-in user's unified stream."""
    principal = await runtime.auth.authenticate(request)
    start = read_start(request)
    return _respond(runtime, await runtime.open_stream(principal, start))


@get("/public/stream")
async def public_stream(request: AnyRequest, runtime: NamedDependency[EdgeRuntime]) -> EventStream:
    """Anonymous: only changes recorded public, of entity types the policy marks public."""
    start = read_start(request)
    return _respond(runtime, await runtime.open_stream(None, start))


@get("/organizations/{organization_id:str}/sync/stream")
async def removed_organization_stream(organization_id: FromPath[str]) -> None:
    """The per-organization stream of the original design, removed."""
    raise GoneError("the per-organization stream was removed: use GET /me/stream, which carries every organization")


STREAM_ROUTES = [me_stream, public_stream, removed_organization_stream]
