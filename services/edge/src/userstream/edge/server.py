"""Running the edge under uvicorn: the app factory workers call, and the one set of server options."""

from __future__ import annotations

import signal
import sys

import uvicorn
from litestar.types import ASGIApp

from userstream.edge.app import create_app
from userstream.edge.http_protocol import GuardedHttpToolsProtocol
from userstream.edge.settings import EdgeSettings
from userstream.logging import configure_logging

# Streams are drained by the app before uvicorn stops (app.py); this bounds whatever is left.
_GRACEFUL_SHUTDOWN = 2
_BACKLOG = 4096


def app_from_environment() -> ASGIApp:
    """Each worker process builds its own app (and its own NATS connection and channels)."""
    settings = EdgeSettings.load()
    configure_logging(settings.logging, "edge")
    GuardedHttpToolsProtocol.configure(settings)  # before uvicorn accepts: it builds a protocol per socket
    return create_app(settings)


def serve(app: ASGIApp | str, settings: EdgeSettings) -> None:
    """Serve ``app`` (an app, or the import string of a factory when ``settings.workers`` > 1)."""
    # uvicorn re-raises the stopping signal after a graceful stop; exit 0 for it instead.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    GuardedHttpToolsProtocol.configure(settings)
    uvicorn.run(
        app,
        factory=isinstance(app, str),
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        # httptools, with a header deadline and size and a small send buffer (http_protocol.py).
        http=GuardedHttpToolsProtocol,
        lifespan="on",
        access_log=False,
        # The edge never reads client addresses; the middleware would cost every request and write.
        proxy_headers=False,
        log_config=None,
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN,
        backlog=_BACKLOG,
    )
