"""Verifying a stream token against every configured key source (CONTRACT §6).

The key decides the algorithm: a token is tried only against keys whose one
algorithm equals its ``alg``, and decoded with that algorithm alone, so ``none``,
HS256 keyed with a public key's PEM, PS256 or RS512 against an RSA key, ES256
signed on another curve, HS512 — all end as ``TokenError`` (401).

Verdicts are cached per token for reconnect storms. A cached verdict is used
only while the key that produced it is still configured: static keys (secrets,
PEM files) live as long as the process; a JWKS key as long as the provider
still publishes it (``JwksCache.holds``). A key removed from the set stops
admitting new streams at once; streams already open end at their ``exp``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
import msgspec

from userstream.auth.jwks import JwksCache
from userstream.auth.keys import ASYMMETRIC_ALGORITHMS, VerificationKey
from userstream.events.validation import is_valid_id
from userstream.tokens import Principal, TokenError, TokenExpiredError


class VerificationUnavailableError(Exception):
    """The token may be valid but cannot be checked yet (no key set fetched): 503, not 401."""


@dataclass(frozen=True, slots=True)
class _Verdict:
    principal: Principal
    key: VerificationKey


class TokenVerifier:
    def __init__(
        self,
        keys: Sequence[VerificationKey],
        jwks: JwksCache | None = None,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        max_entries: int = 50_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._static = tuple(keys)
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._max_entries = max_entries
        self._clock = clock
        self._verified: dict[str, _Verdict] = {}
        self._algorithms = frozenset(key.algorithm for key in keys) | (ASYMMETRIC_ALGORITHMS if jwks else frozenset())
        required = ["exp", "sub", *(["iss"] if issuer else []), *(["aud"] if audience else [])]
        # Without a configured audience, a token's `aud` is not checked (PyJWT would refuse any).
        self._options: Any = {"require": required, "verify_aud": audience is not None}

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified before whose key is still configured; None: verify it."""
        verdict = self._verified.get(token)
        if verdict is None:
            return None
        if verdict.key.source == "jwks" and (self._jwks is None or not self._jwks.holds(verdict.key)):
            del self._verified[token]
            return None
        if verdict.principal.expires_at <= self._clock():
            del self._verified[token]
            raise TokenExpiredError("the token has expired")
        return verdict.principal

    async def verify(self, token: str) -> Principal:
        """The token's principal; TokenError (401) or VerificationUnavailableError (503)."""
        principal = self.cached(token)
        if principal is not None:
            return principal
        algorithm, kid = _header(token)
        if algorithm not in self._algorithms:
            raise TokenError(f"tokens signed with {algorithm!r} are not accepted here")
        for key in self._static:
            if key.algorithm == algorithm:
                principal = self._try(token, key)
                if principal is not None:
                    return self._remember(token, principal, key)
        if self._jwks is None or algorithm not in ASYMMETRIC_ALGORITHMS:
            raise TokenError("the token's signature does not verify")
        for key in await self._jwks_candidates(algorithm, kid):
            principal = self._try(token, key)
            if principal is not None:
                return self._remember(token, principal, key)
        raise TokenError("the token's signature does not verify")

    async def _jwks_candidates(self, algorithm: str, kid: str | None) -> list[VerificationKey]:
        jwks = self._jwks
        assert jwks is not None
        if not jwks.fetched:
            await jwks.wait_for_fetch_under_way()
            if not jwks.fetched:
                raise VerificationUnavailableError("the key set (USERSTREAM_JWKS_URL) has not been fetched yet")
        if kid is None:
            return jwks.keys_without_kid(algorithm)
        key = jwks.key(kid)
        if key is None:
            await jwks.refetch_for_unknown_kid()
            key = jwks.key(kid)
        if key is None:
            raise TokenError("no key of the key set has the token's `kid`")
        if key.algorithm != algorithm:
            raise TokenError(f"the key {kid!r} verifies {key.algorithm}, not {algorithm}")
        return [key]

    def _try(self, token: str, key: VerificationKey) -> Principal | None:
        """The principal if ``key`` verifies the token; None if its signature is not ``key``'s."""
        try:
            claims = jwt.decode(
                token,
                key.material,
                algorithms=[key.algorithm],
                options=self._options,
                issuer=self._issuer,
                audience=self._audience,
            )
        except jwt.InvalidSignatureError:
            return None
        except jwt.ExpiredSignatureError:
            raise TokenExpiredError("the token has expired") from None
        except jwt.InvalidIssuerError:
            raise TokenError("the token's `iss` is not the accepted issuer") from None
        except jwt.InvalidAudienceError:
            raise TokenError("the token's `aud` does not name this service") from None
        except jwt.MissingRequiredClaimError as error:
            raise TokenError(f"the token has no `{error.claim}`") from None
        except jwt.InvalidTokenError:
            raise TokenError("the token is not valid") from None
        except (ValueError, TypeError):
            return None  # a signature of the wrong shape for this key: not this key's
        subject = claims.get("sub")
        if not isinstance(subject, str) or not is_valid_id(subject):
            raise TokenError("the token's `sub` is not a valid user id")
        expires_at = claims["exp"]
        if isinstance(expires_at, bool) or not isinstance(expires_at, int | float):
            raise TokenError("the token's `exp` is not a number")
        return Principal(user_id=subject, expires_at=float(expires_at))

    def _remember(self, token: str, principal: Principal, key: VerificationKey) -> Principal:
        if len(self._verified) >= self._max_entries:
            del self._verified[next(iter(self._verified))]  # the oldest entry
        self._verified[token] = _Verdict(principal, key)
        return principal


def _header(token: str) -> tuple[str, str | None]:
    """``alg`` and ``kid``, only to choose the keys to try; PyJWT then checks the whole token itself.

    Not ``jwt.get_unverified_header``: it validates every base64 character of the signature in Python
    (an RS256 signature has 342), which made choosing the key cost as much as verifying with it.
    """
    head, dot, _ = token.partition(".")
    if not dot or len(head) > _MAX_HEADER:
        raise TokenError("the token is not valid")
    try:
        header = msgspec.json.decode(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, msgspec.DecodeError):
        raise TokenError("the token is not valid") from None
    if not isinstance(header, dict):
        raise TokenError("the token is not valid")
    algorithm, kid = header.get("alg"), header.get("kid")
    if not isinstance(algorithm, str):
        raise TokenError("the token has no `alg`")
    if kid is not None and not isinstance(kid, str):
        raise TokenError("the token's `kid` is not a string")
    return algorithm, kid


_MAX_HEADER = 4096
