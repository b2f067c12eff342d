"""Bootstrap for the gRPC services: health, reflection, logging, error mapping, graceful stop.

Servicers added with ``GrpcServer.add`` run inside the boundary of ``_boundary``:
each call logged once, domain errors mapped to status codes in that one place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from userstream.nats_connection import NatsConnection
from userstream.rpc._boundary import BoundaryRegistrar, Context, Handler
from userstream.rpc.auth import TokenServerInterceptor
from userstream.rpc.metrics import RpcMetrics
from userstream.settings import GrpcServerSettings
from userstream.tracing import Tracing

log = structlog.get_logger("userstream.rpc")

__all__ = ["Context", "GrpcServer", "Handler", "Registrar"]

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


# A generated `add_<Service>Servicer_to_server(servicer, server)`; it is handed a
# BoundaryRegistrar standing in for the server, hence Any for the second argument.
Registrar = Callable[[Any, Any], None]


class GrpcServer:
    """One aio gRPC server with health and reflection.

    Health starts NOT_SERVING; the service flips it with ``set_serving`` once its
    dependencies are ready, and back when they are lost.
    """

    def __init__(
        self,
        settings: GrpcServerSettings,
        service_names: Sequence[str],
        *,
        tracing: Tracing | None = None,
        nats: NatsConnection | None = None,
    ) -> None:
        self._settings = settings
        self._service_names = list(service_names)
        age_ms = int(settings.max_connection_age * 1000)
        # Server spans from OpenTelemetry's own gRPC instrumentation; with tracing off, no interceptor at all
        # (an interceptor runs on every call, see _boundary).
        interceptors = None
        if tracing is not None:
            # Imported only when tracing is on (see userstream.tracing).
            from opentelemetry.instrumentation.grpc import aio_server_interceptor  # noqa: PLC0415

            # The instrumentation package ships no type hints.
            interceptors = [aio_server_interceptor(tracer_provider=tracing.provider)]  # type: ignore[no-untyped-call]
        if settings.token:
            interceptors = [*(interceptors or []), TokenServerInterceptor(settings.token)]
        self.server = grpc.aio.server(
            interceptors=interceptors,
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
        # Call latency and a /metrics endpoint only when a metrics port is configured: else no per-call work.
        self.metrics = RpcMetrics(nats) if settings.metrics_port is not None else None
        self.metrics_port = 0

    def add(self, registrar: Registrar, servicer: Any) -> None:
        """Register ``servicer`` with its methods inside the boundary (logging, error mapping)."""
        observe = self.metrics.observe if self.metrics is not None else None
        registrar(servicer, BoundaryRegistrar(self.server, observe))

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
        if self.metrics is not None and self._settings.metrics_port is not None:
            self.metrics_port = self.metrics.serve(self._settings.host, self._settings.metrics_port)
            log.info("rpc.metrics_listening", host=self._settings.host, port=self.metrics_port)
        return self.port

    async def set_serving(self, *, serving: bool) -> None:
        status = _SERVING if serving else _NOT_SERVING
        for name in ("", *self._service_names):
            await self.health.set(name, status)

    async def stop(self) -> None:
        """Report NOT_SERVING, then give in-flight calls the grace period to finish."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self._settings.shutdown_grace)
        if self.metrics is not None:
            self.metrics.stop()
        log.info("rpc.stopped")
