"""``/healthz``, ``/readyz`` and ``/metrics`` of the relay (CONTRACT §7), as a small Litestar app."""

from __future__ import annotations

from litestar import Litestar, Response, get

from userstream.relay.metrics import CONTENT_TYPE, RelayMetrics
from userstream.relay.relay import Relay

_RETRY_AFTER = "5"


def create_app(relay: Relay, metrics: RelayMetrics) -> Litestar:
    @get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @get("/readyz")
    async def readyz() -> Response[object]:
        """PostgreSQL and NATS reachable; the body says whether this relay records or stands by."""
        checks = {"postgres": relay.postgres_ready, "nats": relay.nats_ready}
        if all(checks.values()):
            return Response({"status": "ready", "role": relay.role, "checks": checks})
        failing = ", ".join(name for name, ok in checks.items() if not ok)
        body = {"error": {"code": "unavailable", "message": f"not ready: {failing}"}, "role": relay.role}
        return Response(body, status_code=503, headers={"Retry-After": _RETRY_AFTER})

    @get("/metrics")
    async def metrics_endpoint() -> Response[bytes]:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return Litestar(route_handlers=[healthz, readyz, metrics_endpoint], openapi_config=None)
