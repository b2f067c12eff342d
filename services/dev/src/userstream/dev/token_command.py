"""``userstream token USER_ID``: print a signed stream token.

The secret is ``USERSTREAM_JWT_SECRET``; when it is not set, the secret that
``userstream dev`` generated in its data dir (``--data-dir``, default
``./.userstream``), so tokens for a running dev stack need no configuration.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from userstream.dev.secret import find_secret
from userstream.dev.settings import DEFAULT_DATA_DIR
from userstream.tokens import TokenError, issue_token

DEFAULT_TTL = 3600


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user_id", metavar="USER_ID", help="the user the token is for (its `sub`)")
    parser.add_argument(
        "--ttl", type=float, default=DEFAULT_TTL, help=f"seconds the token is valid (default {DEFAULT_TTL})"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="without USERSTREAM_JWT_SECRET: the `userstream dev` data dir whose secret signs "
        f"(default {DEFAULT_DATA_DIR})",
    )


def run(args: argparse.Namespace) -> int:
    if not (args.ttl > 0 and math.isfinite(args.ttl)):
        sys.stderr.write("userstream token: error: --ttl must be a positive number of seconds\n")
        return 2
    secret = find_secret(args.data_dir)
    try:
        token = issue_token(args.user_id, secret, args.ttl)
    except TokenError as error:
        sys.stderr.write(f"userstream token: error: {error}\n")
        return 2
    sys.stdout.write(token + "\n")
    return 0
