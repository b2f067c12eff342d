"""HTTP errors of the edge and their one JSON shape: ``{"error": {"code", "message"}}`` (CONTRACT §5)."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException
from litestar.status_codes import HTTP_405_METHOD_NOT_ALLOWED, HTTP_500_INTERNAL_SERVER_ERROR

log = structlog.get_logger("userstream.edge")


class EdgeError(Exception):
    """An error answered with ``status`` and the JSON error body; ``headers`` are added to the response."""

    status = 500
    code = "internal"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequestError(EdgeError):
    status, code = 400, "bad_request"


class UnauthorizedError(EdgeError):
    status, code = 401, "unauthorized"

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message, {"WWW-Authenticate": 'Bearer realm="userstream"'})
        # A short label for the metric of refused requests (`missing`, `malformed`, `expired`, `invalid`).
        self.reason = reason


class GoneError(EdgeError):
    status, code = 410, "gone"


class TooManyStreamsError(EdgeError):
    status, code = 429, "too_many_streams"


class UnavailableHTTPError(EdgeError):
    status, code = 503, "unavailable"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, {"Retry-After": str(retry_after)})


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response[object]:
    return Response(
        {"error": {"code": code, "message": message}},
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def handle_edge_error(request: Request[Any, Any, Any], error: EdgeError) -> Response[object]:
    if isinstance(error, UnauthorizedError):
        # Counted here, where every refusal passes, whichever check raised it.
        runtime = getattr(request.app.state, "runtime", None)
        if runtime is not None:
            failures = runtime.hub.stats.auth_failures
            failures[error.reason] = failures.get(error.reason, 0) + 1
    return error_response(error.status, error.code, error.message, error.headers)


def handle_http_exception(_: Request[Any, Any, Any], error: HTTPException) -> Response[object]:
    """Litestar's own errors (unknown route, wrong method, bad parameter) in the same shape."""
    if isinstance(error, NotFoundException):
        return error_response(404, "not_found", "no such endpoint")
    if error.status_code == HTTP_405_METHOD_NOT_ALLOWED:
        return error_response(405, "method_not_allowed", str(error.detail), error.headers)
    if error.status_code >= HTTP_500_INTERNAL_SERVER_ERROR:
        return handle_unexpected(_, error)
    return error_response(error.status_code, "bad_request", str(error.detail), error.headers)


def handle_unexpected(_: Request[Any, Any, Any], error: Exception) -> Response[object]:
    log.error("edge.unexpected_error", error=repr(error), exc_info=error)
    return error_response(500, "internal", "internal error")


EXCEPTION_HANDLERS = {
    EdgeError: handle_edge_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
