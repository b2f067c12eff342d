"""Stream tokens: HS256 JWTs whose ``sub`` is the user id (CONTRACT §5)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from userstream.events.validation import is_valid_id

ALGORITHMS = ["HS256"]


class TokenError(ValueError):
    """The token cannot be accepted; the message says why, without repeating the token."""


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    expires_at: float  # Unix seconds


def issue_token(user_id: str, secret: str, ttl: float, now: float | None = None) -> str:
    """A token for ``user_id`` valid for ``ttl`` seconds."""
    if not is_valid_id(user_id):
        raise TokenError("the user id must match [A-Za-z0-9_-]{1,128}")
    issued = time.time() if now is None else now
    return jwt.encode({"sub": user_id, "iat": int(issued), "exp": int(issued + ttl)}, secret, algorithm="HS256")


def verify_token(token: str, secret: str) -> Principal:
    """Strict HS256: signature, ``exp`` required and in the future, ``sub`` a valid user id; ``alg: none`` refused."""
    try:
        claims = jwt.decode(token, secret, algorithms=ALGORITHMS, options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError:
        raise TokenError("the token has expired") from None
    except jwt.InvalidTokenError:
        raise TokenError("the token is not valid") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not is_valid_id(subject):
        raise TokenError("the token's `sub` is not a valid user id")
    return Principal(user_id=subject, expires_at=float(claims["exp"]))
