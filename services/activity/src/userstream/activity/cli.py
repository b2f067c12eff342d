"""``userstream activity``: run the activity service in the foreground."""

from __future__ import annotations

import argparse

from userstream.activity.settings import DEFAULT_PORT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"gRPC port (default {DEFAULT_PORT})")
    parser.add_argument("--nats-url", default=None, help="NATS servers, comma separated (default $USERSTREAM_NATS_URL)")


def run(args: argparse.Namespace) -> int:
    from userstream.activity.service import ActivityService
    from userstream.activity.settings import ActivitySettings
    from userstream.logging import configure_logging
    from userstream.process import run_service

    settings = ActivitySettings.load(host=args.host, port=args.port, nats_url=args.nats_url)
    configure_logging(settings.logging, "activity")
    return run_service(lambda: ActivityService(settings))
