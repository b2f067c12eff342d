"""Verification keys, each bound to the one algorithm it may verify (CONTRACT §6: the key decides).

HS256 for secrets, RS256 for RSA keys, ES256 for P-256 keys, EdDSA for Ed25519
keys. A key of any other kind (RSA under 2048 bits, another curve, Ed448, a
symmetric JWK) is refused when configured from a file and ignored in a JWKS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

HS256, RS256, ES256, EDDSA = "HS256", "RS256", "ES256", "EdDSA"
ASYMMETRIC_ALGORITHMS = frozenset({RS256, ES256, EDDSA})
MIN_RSA_BITS = 2048

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class UnusableKeyError(ValueError):
    """A key that cannot be used; the message says why."""


@dataclass(frozen=True, eq=False)
class VerificationKey:
    """One key and the algorithm it verifies. Identity matters: caches hold the object that verified."""

    algorithm: str
    material: PublicKey | bytes = field(repr=False)
    kid: str | None = None
    # Where it came from, for logs: "USERSTREAM_JWT_SECRET", a PEM path, "jwks".
    source: str = ""
    # The JWK it was read from (canonical JSON), so an unchanged key keeps its identity across refreshes.
    fingerprint: str = ""


def secret_key(secret: str, source: str) -> VerificationKey:
    return VerificationKey(HS256, secret.encode(), source=source)


def algorithm_of(key: object) -> str:
    """The one algorithm a public key verifies; UnusableKeyError for any other kind of key."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise UnusableKeyError(f"an RSA key of {key.key_size} bits is too short (at least {MIN_RSA_BITS})")
        return RS256
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise UnusableKeyError(f"an EC key on {key.curve.name}: only P-256 (ES256) is accepted")
        return ES256
    if isinstance(key, ed25519.Ed25519PublicKey):
        return EDDSA
    raise UnusableKeyError(f"a {type(key).__name__}: only RSA, EC P-256 and Ed25519 public keys are accepted")


def load_public_key(path: Path) -> VerificationKey:
    """A PEM public key from ``path``; UnusableKeyError naming the file when it is not one we accept."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UnusableKeyError(f"{path}: cannot be read ({error.strerror or error})") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise UnusableKeyError(f"{path}: not a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
    try:
        algorithm = algorithm_of(key)
    except UnusableKeyError as error:
        raise UnusableKeyError(f"{path}: {error}") from None
    assert isinstance(key, PublicKey)
    return VerificationKey(algorithm, key, source=str(path))


def key_from_jwk(jwk: Any) -> VerificationKey | None:
    """The key of one JWKS entry, or None when it is not a signing key we accept (never an exception)."""
    if not isinstance(jwk, dict):
        return None
    use, kid, alg, kty = jwk.get("use"), jwk.get("kid"), jwk.get("alg"), jwk.get("kty")
    # Not for signatures, a kid that is not text, or a type that is not ours ("oct", a shared secret,
    # never comes from a URL): skipped.
    if (use is not None and use != "sig") or (kid is not None and not isinstance(kid, str)):
        return None
    if kty not in ("RSA", "EC", "OKP"):
        return None
    public = {name: value for name, value in jwk.items() if name not in _PRIVATE_MEMBERS}
    try:
        key: object
        if kty == "RSA":
            key = RSAAlgorithm.from_jwk(public)
        elif kty == "EC":
            key = ECAlgorithm.from_jwk(public)
        else:
            key = OKPAlgorithm.from_jwk(public)
        algorithm = algorithm_of(key)
    except Exception:  # a JWKS is outside input: anything unreadable is just not a key
        return None
    if alg is not None and alg != algorithm:
        return None  # the set says this key is for another algorithm: trust neither reading
    assert isinstance(key, PublicKey)
    return VerificationKey(
        algorithm, key, kid=kid, source="jwks", fingerprint=json.dumps(public, sort_keys=True, default=str)
    )


# Private members of a JWK: a published set should not carry them, and a public key never needs them.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
