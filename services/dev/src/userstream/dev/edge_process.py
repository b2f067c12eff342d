"""The dev stack's edge: ``userstream edge`` plus the demo page and the dev-only API.

``python -m userstream.dev.edge_process --port 8000``. This is the only place
that turns the dev API on (``EdgeSettings.devtools``), and it refuses any
address but loopback: the API mints tokens for any user.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import sys
from collections.abc import Sequence

from userstream.dev.demo import catalogue
from userstream.dev.settings import HOST, DevSettings
from userstream.edge.app import create_app
from userstream.edge.server import serve
from userstream.edge.settings import DEFAULT_PORT, DevToolsSettings, EdgeSettings
from userstream.logging import configure_logging
from userstream.settings import Env, SettingsError

# Streams are drained by the app before uvicorn stops; this bounds whatever is left.


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def dev_edge_settings(host: str, port: int, *, demo: bool, token_ttl: float, env: Env | None = None) -> EdgeSettings:
    if not is_loopback(host):
        raise SettingsError(f"the dev edge serves a token-minting API and listens on loopback only, not {host!r}")
    env = env or Env()
    activity_addr = env.optional_text("ACTIVITY_ADDR")
    if not activity_addr:
        raise SettingsError("USERSTREAM_ACTIVITY_ADDR is required: where the dev API records changes")
    settings = EdgeSettings.load(host=host, port=port, env=env)
    devtools = DevToolsSettings(activity_addr=activity_addr, token_ttl=token_ttl, demo=catalogue() if demo else None)
    return dataclasses.replace(settings, devtools=devtools)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m userstream.dev.edge_process", description=__doc__)
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--no-demo", action="store_true", help="no demo page")
    parser.add_argument("--token-ttl", type=float, default=DevSettings.token_ttl)
    args = parser.parse_args(argv)
    try:
        settings = dev_edge_settings(args.host, args.port, demo=not args.no_demo, token_ttl=args.token_ttl)
    except SettingsError as error:
        parser.exit(2, f"dev edge: error: {error}\n")
    configure_logging(settings.logging, "edge")
    serve(create_app(settings), settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
