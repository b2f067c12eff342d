"""Private keys for ``userstream token --key``: the algorithm comes from the key, as when verifying."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from userstream.auth.keys import UnusableKeyError, algorithm_of

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def load_signing_key(path: Path) -> tuple[SigningKey, str]:
    """The PEM private key at ``path`` (unencrypted) and its algorithm (RS256, ES256 or EdDSA)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UnusableKeyError(f"{path}: cannot be read ({error.strerror or error})") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise UnusableKeyError(f"{path}: not an unencrypted PEM private key ({error})") from None
    if not isinstance(key, SigningKey):
        raise UnusableKeyError(f"{path}: only RSA, EC P-256 and Ed25519 private keys are accepted")
    try:
        return key, algorithm_of(key.public_key())
    except UnusableKeyError as error:
        raise UnusableKeyError(f"{path}: {error}") from None
