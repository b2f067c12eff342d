"""Which keys are accepted, each bound to its one algorithm; a JWKS entry that is not ours is skipped, never fatal."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.auth import ec_pair, ed448_pair, ed25519_pair, rsa_pair
from userstream.auth.jwks import JwksFetchError, parse_jwks
from userstream.auth.keys import UnusableKeyError, key_from_jwk, load_public_key


def test_pem_files_decide_their_algorithm(tmp_path: Path) -> None:
    for pair, algorithm in ((rsa_pair(), "RS256"), (ec_pair(), "ES256"), (ed25519_pair(), "EdDSA")):
        assert load_public_key(pair.write_public(tmp_path / "key.pem")).algorithm == algorithm


@pytest.mark.parametrize(
    "pair", [ec_pair(ec.SECP384R1()), ed448_pair(), rsa_pair(1024)], ids=["p384", "ed448", "rsa1024"]
)
def test_keys_of_other_kinds_are_refused(pair, tmp_path: Path) -> None:
    with pytest.raises(UnusableKeyError):
        load_public_key(pair.write_public(tmp_path / "key.pem"))


def test_a_private_key_file_is_not_a_public_key(tmp_path: Path) -> None:
    path = tmp_path / "private.pem"
    path.write_bytes(rsa_pair().private_pem())
    with pytest.raises(UnusableKeyError, match="not a PEM public key"):
        load_public_key(path)


def test_jwk_entries() -> None:
    rsa = rsa_pair()
    assert key_from_jwk(rsa.jwk("a")).algorithm == "RS256"  # type: ignore[union-attr]
    assert key_from_jwk(rsa.jwk("a", use="sig", alg="RS256")) is not None
    assert key_from_jwk(rsa.jwk("a", use="enc")) is None
    assert key_from_jwk(rsa.jwk("a", alg="PS256")) is None
    assert key_from_jwk({**rsa.jwk(), "kid": 7}) is None
    assert key_from_jwk(ec_pair(ec.SECP384R1()).jwk("b")) is None
    assert key_from_jwk({"kty": "oct", "k": "c2VjcmV0"}) is None
    assert key_from_jwk({"kty": "RSA", "n": 5, "e": []}) is None
    assert key_from_jwk([]) is None


def test_an_unchanged_jwk_has_the_same_fingerprint() -> None:
    jwk = ed25519_pair().jwk("k")
    first, second = key_from_jwk(jwk), key_from_jwk(dict(reversed(list(jwk.items()))))
    assert first is not None
    assert second is not None
    assert first.fingerprint == second.fingerprint


@pytest.mark.parametrize("body", [b"", b"[]", b'{"keys": {}}', b"{", b'{"nokeys": []}'])
def test_documents_that_are_not_key_sets(body: bytes) -> None:
    with pytest.raises(JwksFetchError):
        parse_jwks(body)
