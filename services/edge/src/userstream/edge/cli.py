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
    from userstream.edge.server import serve
    from userstream.edge.settings import EdgeSettings
    from userstream.logging import configure_logging

    if args.nats_url:
        # Workers are separate processes that read their settings from the environment.
        os.environ["USERSTREAM_NATS_URL"] = args.nats_url
    settings = EdgeSettings.load(host=args.host, port=args.port, workers=args.workers)
    configure_logging(settings.logging, "edge")
    serve("userstream.edge.server:app_from_environment", settings)
    return 0
