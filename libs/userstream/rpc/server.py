"""Bootstrap for the gRPC services: health, reflection, logging, error mapping, graceful stop."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias, cast

import grpc
import structlog
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from userstream.errors import InvalidArgumentError, UserstreamError
from userstream.rpc.errors import FIELD_METADATA_KEY, status_of
from userstream.settings import GrpcServerSettings

log = structlog.get_logger("userstream.rpc")

_UNDECODABLE = object()
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# The stubs make these generic; at runtime they are plain classes, hence the strings.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Behavior: TypeAlias = "Callable[[Any, Context], Awaitable[Any]]"
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


class BoundaryInterceptor(grpc.aio.ServerInterceptor):
    """Logs every call once and turns domain errors into status codes.

    Undecodable requests become INVALID_ARGUMENT instead of the framework's INTERNAL.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method: str = handler_call_details.method
        deserializer = handler.request_deserializer

        def decode(data: bytes) -> Any:
            try:
                return deserializer(data) if deserializer else data
            except DecodeError:
                return _UNDECODABLE

        return grpc.unary_unary_rpc_method_handler(
            _at_boundary(method, cast(Behavior, handler.unary_unary)),
            request_deserializer=decode,
            response_serializer=handler.response_serializer,
        )


def _at_boundary(method: str, behavior: Behavior) -> Behavior:
    async def call(request: Any, context: Context) -> Any:
        started = time.perf_counter()
        structlog.contextvars.bind_contextvars(rpc=method, request_id=uuid.uuid4().hex[:16])
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
            elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
            log_call = log.info if code is not grpc.StatusCode.OK else log.debug
            log_call("rpc.call", code=code.name, elapsed_ms=elapsed_ms)
            structlog.contextvars.unbind_contextvars("rpc", "request_id")
        raise AssertionError("unreachable: abort raises")

    return call


Registrar = Callable[[Any, grpc.aio.Server], None]


class GrpcServer:
    """One aio gRPC server with health and reflection.

    Health starts NOT_SERVING; the service flips it with ``set_serving`` once its
    dependencies are ready, and back when they are lost.
    """

    def __init__(self, settings: GrpcServerSettings, service_names: Sequence[str]) -> None:
        self._settings = settings
        self._service_names = list(service_names)
        age_ms = int(settings.max_connection_age * 1000)
        self.server = grpc.aio.server(
            interceptors=[BoundaryInterceptor()],
            options=[
                # Never share a port silently with another process.
                ("grpc.so_reuseport", 0),
                ("grpc.max_connection_age_ms", age_ms),
                ("grpc.max_connection_age_grace_ms", int(settings.shutdown_grace * 1000)),
            ],
        )
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [*self._service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self.server,
        )
        self.port = 0

    def add(self, registrar: Registrar, servicer: Any) -> None:
        registrar(servicer, self.server)

    async def start(self) -> int:
        """Bind and start; returns the bound port (useful with port 0)."""
        address = f"{self._settings.host}:{self._settings.port}"
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError as error:  # grpcio's way of saying the bind failed
            raise OSError(f"cannot listen on {address} (in use, or not an address of this host)") from error
        if self.port == 0:
            raise OSError(f"cannot listen on {address}")
        await self.server.start()
        await self.set_serving(serving=False)
        log.info("rpc.listening", host=self._settings.host, port=self.port)
        return self.port

    async def set_serving(self, *, serving: bool) -> None:
        status = _SERVING if serving else _NOT_SERVING
        for name in ("", *self._service_names):
            await self.health.set(name, status)

    async def stop(self) -> None:
        """Report NOT_SERVING, then give in-flight calls the grace period to finish."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self._settings.shutdown_grace)
        log.info("rpc.stopped")
