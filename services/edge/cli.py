"""``userstream edge``: serve the streams with uvicorn (uvloop, httptools), one or several workers."""

from __future__ import annotations

import argparse
import os

from userstream.edge.settings import DEFAULT_PORT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default {DEFAULT_PORT})")
    parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the port (default 1)")
    parser.add_argument("--nats-url", default=None, help="NATS servers, comma separated (default $USERSTREAM_NATS_URL)")


def run(args: argparse.Namespace) -> int:
    import signal
    import sys

    import uvicorn
    from userstream.edge.settings import EdgeSettings
    from userstream.logging import configure_logging

    if args.nats_url:
        # Workers are separate processes that read their settings from the environment.
        os.environ["USERSTREAM_NATS_URL"] = args.nats_url
    settings = EdgeSettings.load(host=args.host, port=args.port, workers=args.workers)
    configure_logging(settings.logging, "edge")
    # uvicorn re-raises the stopping signal after a graceful stop; exit 0 for it instead.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        "userstream.edge.server:app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        # The edge never reads client addresses; the middleware would cost every request and write.
        proxy_headers=False,
        log_config=None,
        # Streams are drained by the app before uvicorn stops; this bounds whatever is left.
        timeout_graceful_shutdown=2,
        backlog=4096,
    )
    return 0
