"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency

from userstream.edge.errors import error_response
from userstream.edge.metrics import CONTENT_TYPE, EdgeMetrics
from userstream.edge.runtime import EdgeRuntime


@get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and serving HTTP."""
    return {"status": "ok"}


@get("/readyz")
async def readyz(runtime: NamedDependency[EdgeRuntime]) -> Response[object]:
    """Ready for new streams: NATS and acl reachable, not draining."""
    checks = {"nats": runtime.log.ready, "acl": runtime.acl_reachable, "draining": runtime.draining}
    if runtime.ready:
        return Response({"status": "ready", "checks": checks}, media_type="application/json")
    failing = [name for name in ("nats", "acl") if not checks[name]] + (["draining"] if runtime.draining else [])
    return error_response(
        503, "unavailable", f"not ready: {', '.join(failing)}", {"Retry-After": str(runtime.settings.retry_after)}
    )


@get("/metrics")
async def metrics(metrics: NamedDependency[EdgeMetrics]) -> Response[bytes]:
    return Response(metrics.render(), media_type=CONTENT_TYPE)


PROBE_ROUTES = [healthz, readyz, metrics]
