"""``userstream token --key``: signs with a private key, the algorithm taken from the key."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from tests.support.auth import KeyPair, ec_pair, ed25519_pair, rsa_pair
from userstream.cli import main


@pytest.mark.parametrize(
    ("pair", "algorithm"), [(rsa_pair(), "RS256"), (ec_pair(), "ES256"), (ed25519_pair(), "EdDSA")]
)
def test_a_token_signed_with_a_private_key(
    pair: KeyPair, algorithm: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "private.pem"
    key.write_bytes(pair.private_pem())
    argv = ["token", "alice", "--key", str(key), "--kid", "k1", "--iss", "https://idp/", "--aud", "userstream"]
    assert main(argv) == 0
    token = capsys.readouterr().out.strip()
    assert jwt.get_unverified_header(token) == {"alg": algorithm, "kid": "k1", "typ": "JWT"}
    claims = jwt.decode(
        token, pair.private.public_key(), algorithms=[algorithm], audience="userstream", issuer="https://idp/"
    )
    assert claims["sub"] == "alice"


def test_a_file_that_is_no_private_key_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    public = rsa_pair().write_public(tmp_path / "public.pem")
    assert main(["token", "alice", "--key", str(public)]) == 2
    error = capsys.readouterr().err
    assert str(public) in error
    assert len(error.strip().splitlines()) == 1
