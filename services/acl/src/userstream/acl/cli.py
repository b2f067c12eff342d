"""``userstream acl``: run the acl service in the foreground."""

from __future__ import annotations

import argparse

from userstream.acl.settings import DEFAULT_PORT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"gRPC port (default {DEFAULT_PORT})")
    parser.add_argument("--nats-url", default=None, help="NATS servers, comma separated (default $USERSTREAM_NATS_URL)")
    parser.add_argument(
        "--accept-retention-gap",
        action="store_true",
        help="serve even if the log purged events no snapshot covers (memberships may then be incomplete)",
    )


def run(args: argparse.Namespace) -> int:
    from userstream.acl.service import AclService
    from userstream.acl.settings import AclSettings
    from userstream.logging import configure_logging
    from userstream.process import run_service

    settings = AclSettings.load(
        host=args.host, port=args.port, nats_url=args.nats_url, accept_retention_gap=args.accept_retention_gap
    )
    configure_logging(settings.logging, "acl")
    return run_service(lambda: AclService(settings))
