"""``userstream token USER_ID``: print a signed stream token.

With ``--key PEM`` it signs with that private key, the algorithm taken from the
key (RSA → RS256, EC P-256 → ES256, Ed25519 → EdDSA), as an identity provider
would — to test a deployment that verifies with public keys or a JWKS by hand.
Otherwise the secret is ``USERSTREAM_JWT_SECRET``; when it is not set, the
secret that ``userstream dev`` generated in its data dir (``--data-dir``,
default ``./.userstream``), so tokens for a running dev stack need no
configuration.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from userstream.auth.keys import UnusableKeyError
from userstream.auth.signing import SigningKey, load_signing_key
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
    parser.add_argument(
        "--key", type=Path, default=None, help="sign with this PEM private key (RSA, EC P-256 or Ed25519)"
    )
    parser.add_argument("--kid", default=None, help="the token's `kid` header (the key's id in a JWKS)")
    parser.add_argument("--iss", default=None, help="the token's `iss` claim")
    parser.add_argument("--aud", default=None, help="the token's `aud` claim")


def run(args: argparse.Namespace) -> int:
    if not (args.ttl > 0 and math.isfinite(args.ttl)):
        sys.stderr.write("userstream token: error: --ttl must be a positive number of seconds\n")
        return 2
    key: SigningKey | str
    try:
        if args.key is not None:
            key, algorithm = load_signing_key(args.key)
        else:
            key, algorithm = find_secret(args.data_dir), "HS256"
        token = issue_token(
            args.user_id, key, args.ttl, algorithm=algorithm, kid=args.kid, issuer=args.iss, audience=args.aud
        )
    except (TokenError, UnusableKeyError) as error:
        sys.stderr.write(f"userstream token: error: {error}\n")
        return 2
    sys.stdout.write(token + "\n")
    return 0
