"""Stream tokens: HS256 JWTs whose ``sub`` is the user id (CONTRACT §5)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

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
        raise TokenExpiredError("the token has expired") from None
    except jwt.InvalidTokenError:
        raise TokenError("the token is not valid") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not is_valid_id(subject):
        raise TokenError("the token's `sub` is not a valid user id")
    return Principal(user_id=subject, expires_at=float(claims["exp"]))


class TokenVerifier:
    """``verify_token`` with a bounded cache of tokens already verified.

    A reconnect storm presents the same tokens again and again; checking an
    HS256 signature with PyJWT costs ~130 µs, a lookup nothing. Only tokens that
    passed every check are cached, and each use still checks ``exp``.
    """

    def __init__(self, secret: str, max_entries: int = 50_000, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self._max_entries = max_entries
        self._clock = clock
        self._verified: dict[str, Principal] = {}

    def verify(self, token: str) -> Principal:
        principal = self._verified.get(token)
        if principal is None:
            principal = verify_token(token, self._secret)
            if len(self._verified) >= self._max_entries:
                del self._verified[next(iter(self._verified))]  # the oldest entry
            self._verified[token] = principal
        elif principal.expires_at <= self._clock():
            del self._verified[token]
            raise TokenExpiredError("the token has expired")
        return principal
