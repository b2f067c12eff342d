"""The boundary every servicer method runs inside: one log line, domain errors → status codes.

Handlers are wrapped once, when a servicer is registered, rather than by a
server interceptor: an interceptor runs (and builds a new handler) on every
call, which costs a measurable share of a small RPC such as RecordActivity.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias, cast

import grpc
import structlog
from google.protobuf.message import DecodeError

from userstream.errors import InvalidArgumentError, UserstreamError
from userstream.rpc.errors import FIELD_METADATA_KEY, status_of

log = structlog.get_logger("userstream.rpc")

# The stubs make these generic; at runtime they are plain classes, hence the strings.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Behavior: TypeAlias = "Callable[[Any, Context], Awaitable[Any]]"
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"

_UNDECODABLE = object()
# Request ids: unique per process start, cheap per call (uuid4 reads the OS's random source).
_PROCESS_TAG = os.urandom(4).hex()
_REQUEST_NUMBERS = itertools.count(1)


# Called with (method, status code name, seconds) after each call, when the service has metrics.
Observer: TypeAlias = "Callable[[str, str, float], None]"


def wrap_handler(method: str, handler: Handler, observe: Observer | None = None) -> Handler:
    """``handler`` with the boundary around it; streaming handlers are returned as they are."""
    if handler.unary_unary is None:
        return handler
    deserializer = handler.request_deserializer

    def decode(data: bytes) -> Any:
        # Undecodable requests become INVALID_ARGUMENT instead of the framework's INTERNAL.
        try:
            return deserializer(data) if deserializer else data
        except DecodeError:
            return _UNDECODABLE

    return grpc.unary_unary_rpc_method_handler(
        _at_boundary(method, cast(Behavior, handler.unary_unary), observe),
        request_deserializer=decode,
        response_serializer=handler.response_serializer,
    )


def _at_boundary(method: str, behavior: Behavior, observe: Observer | None) -> Behavior:
    async def call(request: Any, context: Context) -> Any:
        started = time.perf_counter()
        structlog.contextvars.bind_contextvars(rpc=method, request_id=f"{_PROCESS_TAG}-{next(_REQUEST_NUMBERS):x}")
        code = grpc.StatusCode.OK
        try:
            if request is _UNDECODABLE:
                raise InvalidArgumentError("request", "is not a valid protobuf message for this method")
            return await behavior(request, context)
        except UserstreamError as error:
            code = status_of(error)
            if isinstance(error, InvalidArgumentError):
                context.set_trailing_metadata(((FIELD_METADATA_KEY, error.field),))
            await context.abort(code, str(error))
        except grpc.aio.AbortError:
            code = context.code()
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("rpc.failed")
            await context.abort(code, "internal error")
        finally:
            elapsed = time.perf_counter() - started
            if observe is not None:
                observe(method, code.name, elapsed)
            log_call = log.info if code is not grpc.StatusCode.OK else log.debug
            log_call("rpc.call", code=code.name, elapsed_ms=round(elapsed * 1000, 3))
            structlog.contextvars.unbind_contextvars("rpc", "request_id")
        raise AssertionError("unreachable: abort raises")

    return call


class _WrappingGenericHandler(grpc.GenericRpcHandler):
    """A generic handler whose method handlers come wrapped (each wrapped once, then reused)."""

    def __init__(self, inner: grpc.GenericRpcHandler, observe: Observer | None) -> None:
        self._inner = inner
        self._observe = observe
        self._wrapped: dict[str, Handler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        method: str = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = self._inner.service(handler_call_details)
            if handler is None:
                return None  # unknown methods are not remembered: callers choose their names
            wrapped = self._wrapped[method] = wrap_handler(method, handler, self._observe)
        return wrapped


class BoundaryRegistrar:
    """Stands in for the server while generated ``add_*_to_server`` code registers a servicer."""

    def __init__(self, server: grpc.aio.Server, observe: Observer | None = None) -> None:
        self._server = server
        self._observe = observe

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(
            tuple(_WrappingGenericHandler(h, self._observe) for h in generic_rpc_handlers)
        )

    def add_registered_method_handlers(self, service_name: str, method_handlers: Mapping[str, Handler]) -> None:
        wrapped = {
            name: wrap_handler(f"/{service_name}/{name}", h, self._observe) for name, h in method_handlers.items()
        }
        self._server.add_registered_method_handlers(service_name, wrapped)
