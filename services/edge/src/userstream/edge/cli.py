"""``userstream edge``: serve the streams with uvicorn (uvloop, httptools), one or several workers."""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

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
    with shared_metrics_dir(settings.workers):
        serve("userstream.edge.server:app_from_environment", settings)
    return 0


@contextlib.contextmanager
def shared_metrics_dir(workers: int) -> Iterator[None]:
    """With several workers, the directory where they share their metrics (docs/operations.md).

    prometheus-client reads ``PROMETHEUS_MULTIPROC_DIR`` when a worker imports it, so it is set
    here, before the workers start. An operator's own directory is used as given, emptied first
    (files of an earlier run would be counted again); otherwise a temporary one lives as long as
    the server.
    """
    from userstream.edge.metrics import MULTIPROCESS_DIR_VARIABLE

    configured = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    if configured:
        for stale in Path(configured).glob("*.db"):
            stale.unlink()
        yield
        return
    if workers <= 1:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="userstream-edge-metrics-") as directory:
        os.environ[MULTIPROCESS_DIR_VARIABLE] = directory
        try:
            yield
        finally:
            del os.environ[MULTIPROCESS_DIR_VARIABLE]
