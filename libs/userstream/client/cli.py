"""``userstream tail``: print a user's stream as it arrives, readably or as JSON lines (``--json``).

With ``--user ID`` it signs its own tokens (and new ones when they expire)
with ``USERSTREAM_JWT_SECRET``, else the secret of a ``userstream dev`` data
dir (``--data-dir``); with ``--token`` it uses that token as it is.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"
# Tokens `tail --user` signs for itself; a new one is signed when the server says it expired.
TOKEN_TTL = 3600.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="ID", help="whose stream (a token is signed for them)")
    who.add_argument("--token", metavar="JWT", help="a stream token")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the edge's base URL (default {DEFAULT_URL})")
    parser.add_argument("--offset", default="now", help="`now` (default) or a cursor to resume after")
    parser.add_argument("--json", action="store_true", help="one JSON object per line: {event, id, data}")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".userstream"),
        help="with --user and no USERSTREAM_JWT_SECRET: the `userstream dev` data dir whose secret signs",
    )


def run(args: argparse.Namespace) -> int:
    import asyncio
    import sys

    from userstream.client.errors import StreamError
    from userstream.client.stream import UserStream
    from userstream.client.tail import tail

    token, refresh = _tokens(args)
    stream = UserStream(args.url, token, offset=args.offset, refresh_token=refresh)
    try:
        asyncio.run(tail(stream, as_json=args.json))
    except KeyboardInterrupt:
        return 0
    except StreamError as error:
        sys.stderr.write(f"userstream tail: {error}\n")
        return 1
    return 0


def _tokens(args: argparse.Namespace) -> tuple[str, Callable[[], str] | None]:
    """The token to start with and, with --user, how to sign a new one when it expires."""
    if args.token:
        return args.token, None
    from userstream.dev.secret import find_secret
    from userstream.tokens import issue_token

    secret = find_secret(args.data_dir)

    def sign() -> str:
        return issue_token(args.user, secret, TOKEN_TTL)

    return sign(), sign
