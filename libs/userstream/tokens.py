"""Stream tokens: JWTs whose ``sub`` is the user id (CONTRACT §5).

Issuing, and the plain HS256 check; the edge verifies with every configured
key source through ``userstream.auth.verifier.TokenVerifier``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

from userstream.events.validation import is_valid_id

ALGORITHMS = ["HS256"]


class TokenError(ValueError):
    """The token cannot be accepted; the message says why, without repeating the token."""


class TokenExpiredError(TokenError):
    """The token was valid but its ``exp`` has passed (told apart for the edge's metrics)."""


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    expires_at: float  # Unix seconds


def issue_token(
    user_id: str,
    key: Any,
    ttl: float,
    now: float | None = None,
    *,
    algorithm: str = "HS256",
    kid: str | None = None,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """A token for ``user_id`` valid for ``ttl`` seconds, signed with ``key`` (an HS256 secret by default)."""
    if not is_valid_id(user_id):
        raise TokenError("the user id must match [A-Za-z0-9_-]{1,128}")
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {"sub": user_id, "iat": int(issued), "exp": int(issued + ttl)}
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid} if kid else None)


def verify_token(token: str, secret: str) -> Principal:
    """Strict HS256: signature, ``exp`` required and in the future, ``sub`` a valid user id; ``alg: none`` refused."""
    try:
        claims = jwt.decode(token, secret, algorithms=ALGORITHMS, options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError:
        raise TokenExpiredError("the token has expired") from None
    except jwt.InvalidTokenError:
        raise TokenError("the token is not valid") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not is_valid_id(subject):
        raise TokenError("the token's `sub` is not a valid user id")
    return Principal(user_id=subject, expires_at=float(claims["exp"]))
