"""Client channels and the translation of call failures into domain errors."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from userstream.errors import UserstreamError
from userstream.rpc.auth import TokenClientInterceptor
from userstream.rpc.errors import FIELD_METADATA_KEY, error_of
from userstream.tracing import Tracing

T = TypeVar("T")

# Client-side load balancing over every address a (headless) service name resolves to.
_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def open_channel(address: str, token: str | None = None, tracing: Tracing | None = None) -> grpc.aio.Channel:
    """An insecure channel to ``host:port`` that balances calls over all resolved addresses.

    ``token``: the internal plane's bearer token (``USERSTREAM_GRPC_TOKEN``), sent with every call.
    With ``tracing``, each call is a client span (OpenTelemetry's gRPC instrumentation) whose context
    travels in the call's metadata; without it, no tracing interceptor at all.
    """
    interceptors: list[Any] = [TokenClientInterceptor(token)] if token else []
    if tracing is not None:
        # Imported only when tracing is on (see userstream.tracing).
        from opentelemetry.instrumentation.grpc import aio_client_interceptors  # noqa: PLC0415

        # The instrumentation package ships no type hints.
        interceptors += aio_client_interceptors(tracer_provider=tracing.provider)  # type: ignore[no-untyped-call]
    return grpc.aio.insecure_channel(
        address,
        interceptors=interceptors or None,
        options=[
            ("grpc.service_config", _SERVICE_CONFIG),
            ("grpc.enable_retries", 0),
            ("grpc.keepalive_time_ms", 30_000),
        ],
    )


async def call(pending: Awaitable[T]) -> T:
    """Await a gRPC call, raising the matching domain error when it fails."""
    try:
        return await pending
    except grpc.aio.AioRpcError as exc:
        raise _domain_error(exc) from exc


def _domain_error(exc: grpc.aio.AioRpcError) -> UserstreamError:
    field = None
    for key, value in exc.trailing_metadata() or ():
        if key == FIELD_METADATA_KEY:
            field = str(value)
    return error_of(exc.code(), exc.details() or "", field)


async def is_serving(channel: grpc.aio.Channel, timeout: float = 1.0) -> bool:
    """Whether the server behind ``channel`` reports SERVING on the standard health service."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout)
    except grpc.aio.AioRpcError:
        return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)
