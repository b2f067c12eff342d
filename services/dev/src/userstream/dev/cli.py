"""``userstream dev``: NATS, the three services, demo data and traffic, on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from userstream.dev.settings import (
    DEFAULT_ACL_PORT,
    DEFAULT_ACTIVITY_PORT,
    DEFAULT_DATA_DIR,
    DEFAULT_EDGE_PORT,
    DEFAULT_NATS_PORT,
    DEFAULT_RELAY_PORT,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"NATS store, the generated JWT secret and the logs (default {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--nats-url", default=None, help="use this NATS instead of starting one (default $USERSTREAM_NATS_URL if set)"
    )
    parser.add_argument(
        "--nats-port",
        type=int,
        default=DEFAULT_NATS_PORT,
        help=f"port of the embedded NATS (default {DEFAULT_NATS_PORT})",
    )
    parser.add_argument("--edge-port", type=int, default=DEFAULT_EDGE_PORT, help=f"HTTP (default {DEFAULT_EDGE_PORT})")
    parser.add_argument(
        "--activity-port", type=int, default=DEFAULT_ACTIVITY_PORT, help=f"gRPC (default {DEFAULT_ACTIVITY_PORT})"
    )
    parser.add_argument("--acl-port", type=int, default=DEFAULT_ACL_PORT, help=f"gRPC (default {DEFAULT_ACL_PORT})")
    parser.add_argument(
        "--outbox-dsn",
        default=None,
        help="also install the outbox in this PostgreSQL database and run a relay (default $USERSTREAM_OUTBOX_DSN)",
    )
    parser.add_argument(
        "--relay-port", type=int, default=DEFAULT_RELAY_PORT, help=f"relay HTTP probes (default {DEFAULT_RELAY_PORT})"
    )
    parser.add_argument("--no-demo", action="store_true", help="no demo data (implies --no-traffic)")
    parser.add_argument("--no-traffic", action="store_true", help="no demo traffic")
    parser.epilog = "A port of 0 picks a free one. The stack listens on 127.0.0.1 only."


def run(args: argparse.Namespace) -> int:
    import asyncio
    import dataclasses
    import logging
    import os
    import sys

    from userstream.dev.settings import DevSettings
    from userstream.dev.stack import DevStack
    from userstream.logging import configure_logging
    from userstream.settings import Env, LoggingSettings

    env = Env()
    for name in ("nats_port", "edge_port", "activity_port", "acl_port", "relay_port"):
        if not 0 <= getattr(args, name) <= 65535:
            raise SystemExit(f"userstream dev: error: --{name.replace('_', '-')} must be a port number (0 picks one)")
    settings = DevSettings.load(
        data_dir=args.data_dir,
        nats_url=args.nats_url or env.optional_text("NATS_URL"),
        nats_port=args.nats_port,
        edge_port=args.edge_port,
        activity_port=args.activity_port,
        acl_port=args.acl_port,
        outbox_dsn=args.outbox_dsn,
        relay_port=args.relay_port,
        demo=not args.no_demo,
        traffic=not args.no_traffic,
        env=env,
    )
    # People read this process's output: console logs unless asked otherwise.
    log_settings = LoggingSettings.from_env(env)
    if not env.optional_text("LOG_FORMAT"):
        log_settings = dataclasses.replace(log_settings, format="console")
    configure_logging(log_settings, "dev")
    # httpx logs every readiness probe at info level.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    status = asyncio.run(DevStack(settings).run())
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            # The reader of our output went first (`dev 2>&1 | tee`, then Ctrl-C): Python would
            # fail its own flush at exit (status 120); no noise, same status.
            os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
    return status
