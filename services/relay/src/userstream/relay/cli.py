"""``userstream relay``: move committed outbox rows into the log, in the foreground."""

from __future__ import annotations

import argparse

from userstream.relay.settings import DEFAULT_PORT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address of the HTTP probes (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default {DEFAULT_PORT})")
    parser.add_argument("--dsn", default=None, help="the outbox's database (default $USERSTREAM_OUTBOX_DSN)")
    parser.add_argument("--nats-url", default=None, help="NATS servers, comma separated (default $USERSTREAM_NATS_URL)")


def run(args: argparse.Namespace) -> int:
    from userstream.logging import configure_logging
    from userstream.process import run_service
    from userstream.relay.service import RelayService
    from userstream.relay.settings import RelaySettings

    settings = RelaySettings.load(host=args.host, port=args.port, dsn=args.dsn, nats_url=args.nats_url)
    configure_logging(settings.logging, "relay")
    return run_service(lambda: RelayService(settings))
