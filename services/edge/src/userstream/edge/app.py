"""The edge's Litestar application: routes, dependencies, errors, CORS, and the worker's lifespan."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import structlog
from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.types import Receive, Scope, Send

from userstream import gc_tuning
from userstream.edge.assets import ASSET_ROUTES
from userstream.edge.errors import EXCEPTION_HANDLERS
from userstream.edge.metrics import EdgeMetrics
from userstream.edge.probes import PROBE_ROUTES
from userstream.edge.routes import STREAM_ROUTES
from userstream.edge.runtime import EdgeRuntime
from userstream.edge.settings import EdgeSettings
from userstream.edge.stream_response import TRANSPORT_KEY

log = structlog.get_logger("userstream.edge")


def create_app(settings: EdgeSettings, *, owns_process: bool = True) -> TransportExposingApp:
    """The ASGI app of one edge worker.

    ``owns_process``: the app is the process's (``userstream edge``): drain on SIGTERM and tune the
    garbage collector once started. Off when embedded in tests.
    """

    parts = _WorkerParts()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        runtime = EdgeRuntime(settings)
        app.state.runtime = parts.runtime = runtime
        metrics = EdgeMetrics(runtime, settings.metrics_dir, settings.metrics_sync_interval)
        app.state.metrics = parts.metrics = metrics
        runtime.hub.observe_lag = metrics.lag.observe
        runtime.observe_acl = metrics.acl_latency.observe
        await runtime.start()
        syncing = asyncio.get_running_loop().create_task(metrics.run())
        if owns_process:
            gc_tuning.tune_after_start()
            _drain_on_sigterm(runtime)
        try:
            yield
        finally:
            syncing.cancel()
            await asyncio.gather(syncing, return_exceptions=True)
            await runtime.stop()
            if metrics.multiprocess:
                metrics.sync()  # the last counts of this worker stay in the totals

    extra_routes: list[Any] = []
    lifespans: list[Any] = [lifespan]
    if settings.devtools is not None:
        # Only the dev stack sets this (see DevToolsSettings); the import keeps the dev API out of production.
        from userstream.edge.devtools import mount_devtools  # noqa: PLC0415

        assert settings.auth.secret is not None, "the dev stack always signs with a secret"
        devtools = mount_devtools(settings.devtools, settings.auth.secret, settings.grpc_token)
        extra_routes.append(devtools.router)
        lifespans.append(devtools.lifespan)

    cors = None
    if settings.cors_origins:
        cors = CORSConfig(allow_origins=list(settings.cors_origins), allow_credentials=True, allow_methods=["GET"])
    app = Litestar(
        route_handlers=[*STREAM_ROUTES, *PROBE_ROUTES, *ASSET_ROUTES, *extra_routes],
        dependencies={
            # Closures, not `state: State`: Litestar builds a State (with a lock) per request for that.
            "runtime": Provide(parts.get_runtime, sync_to_thread=False),
            "metrics": Provide(parts.get_metrics, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]  # handlers are typed per exception
        lifespan=lifespans,
        cors_config=cors,
        openapi_config=None,
        logging_config=None,
    )
    return TransportExposingApp(app)


class _WorkerParts:
    """What the lifespan builds, for the dependencies handlers declare."""

    runtime: EdgeRuntime
    metrics: EdgeMetrics

    def get_runtime(self) -> EdgeRuntime:
        return self.runtime

    def get_metrics(self) -> EdgeMetrics:
        return self.metrics


class TransportExposingApp:
    """Exposes uvicorn's transport to the stream response, so a stalled reader's socket can be dropped.

    ASGI offers no way to abort a connection whose client stopped reading; uvicorn's
    ``send`` is a method of an object holding the transport.
    """

    def __init__(self, app: Litestar) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            if transport is not None:
                scope.setdefault("extensions", {})[TRANSPORT_KEY] = transport  # type: ignore[index]  # a dict
        await self.app(scope, receive, send)


def _drain_on_sigterm(runtime: EdgeRuntime) -> None:
    """On SIGTERM, drain the streams first, then let uvicorn's own handler stop the server.

    uvicorn installs its handler before the lifespan starts and would otherwise
    wait forever for streams that never end on their own. A second signal stops
    at once.
    """
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if runtime.draining:
            previous(signum, frame)
            return
        loop.call_soon_threadsafe(_start_drain, signum, frame)

    def _start_drain(signum: int, frame: FrameType | None) -> None:
        task = loop.create_task(runtime.drain())
        task.add_done_callback(lambda _: previous(signum, frame))
        _keep.add(task)

    signal.signal(signal.SIGTERM, handle)


_keep: set[Any] = set()
