"""A shared bearer token on the internal gRPC plane (``USERSTREAM_GRPC_TOKEN``).

activity records into the log and acl grants memberships: anything that can
reach their ports could otherwise write events or make itself a member. When
the token is set, the servers refuse every call without
``authorization: Bearer <token>`` (``UNAUTHENTICATED``), and the clients built
from the same setting send it. The standard health service stays open:
Kubernetes' native gRPC probes cannot send metadata, and health reveals
nothing. The token is compared in constant time and never logged.

The token protects calls, not the wire: run it over a private network (the
NetworkPolicies in ``deploy/``), or terminate TLS in a mesh.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

METADATA_KEY = "authorization"
SCHEME = "Bearer "
if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]  # generic in the stubs only
# Readable without the token: probes (Kubernetes' gRPC probe sends no metadata).
OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})


def authorization_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return ((METADATA_KEY, SCHEME + token),)


class TokenServerInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without the bearer token, before any servicer code runs."""

    def __init__(self, token: str) -> None:
        self._expected = (SCHEME + token).encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method in OPEN_METHODS:
            return handler
        for key, value in handler_call_details.invocation_metadata or ():
            if key == METADATA_KEY:
                presented = value.encode() if isinstance(value, str) else bytes(value)
                if hmac.compare_digest(presented, self._expected):
                    return handler
        return _refusal(handler)


async def _refuse(_: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid `authorization: Bearer <USERSTREAM_GRPC_TOKEN>`")


async def _refuse_stream(_: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    await _refuse(None, context)
    yield  # pragma: no cover  # makes this an async generator, as streaming handlers are


def _refusal(handler: Handler) -> Handler:
    """A handler of the same kind as ``handler`` that only refuses."""
    deserializer = handler.request_deserializer
    serializer = handler.response_serializer
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(_refuse_stream, deserializer, serializer)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(_refuse, deserializer, serializer)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(_refuse_stream, deserializer, serializer)
    return grpc.unary_unary_rpc_method_handler(_refuse, deserializer, serializer)


class TokenClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds the bearer token to every call of a channel (every internal RPC is unary-unary)."""

    def __init__(self, token: str) -> None:
        self._metadata = authorization_metadata(token)

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        metadata = grpc.aio.Metadata(*(client_call_details.metadata or ()), *self._metadata)
        details = grpc.aio.ClientCallDetails(
            client_call_details.method,
            client_call_details.timeout,
            metadata,
            client_call_details.credentials,
            client_call_details.wait_for_ready,
        )
        return await continuation(details, request)
