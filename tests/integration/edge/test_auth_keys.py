"""CONTRACT §6 over real HTTP: every key type, the key decides the algorithm, iss/aud, the previous secret."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, padding

from tests.integration.edge.conftest import StackFactory
from tests.support.auth import KeyPair, claims, ec_pair, ed448_pair, ed25519_pair, forge, hmac_with, rsa_pair
from tests.support.sse import open_stream, request_error
from tests.support.stack import SECRET, Stack
from userstream.tokens import issue_token

pytestmark = pytest.mark.integration

PREVIOUS = "the-secret-before-the-rotation-32-bytes+"


async def _opens(stack: Stack, token: str) -> None:
    stream = await open_stream(stack.base_url, headers={"Authorization": f"Bearer {token}"})
    try:
        assert (await stream.next_event()).event == "offset"
    finally:
        await stream.close()


async def _refused(stack: Stack, token: str, why: str) -> None:
    response = await request_error(stack.base_url, headers={"Authorization": f"Bearer {token}"})
    assert response.status == 401, (why, response.status, response.body)
    assert response.json()["error"]["code"] == "unauthorized", why


@pytest.fixture(scope="module")
def pairs() -> dict[str, KeyPair]:
    return {"rsa": rsa_pair(), "ec": ec_pair(), "ed": ed25519_pair()}


async def test_each_key_type_and_both_secrets_open_a_stream(
    make_stack: StackFactory, pairs: dict[str, KeyPair], tmp_path: Path
) -> None:
    paths = [pair.write_public(tmp_path / f"{name}.pem") for name, pair in pairs.items()]
    stack = await make_stack(edge_env={"JWT_PUBLIC_KEYS": ",".join(map(str, paths)), "JWT_PREVIOUS_SECRET": PREVIOUS})
    for pair in pairs.values():
        await _opens(stack, pair.token("alice"))
    await _opens(stack, issue_token("alice", SECRET, 600))
    await _opens(stack, issue_token("alice", PREVIOUS, 600))  # the rotation: the old secret still verifies
    await _refused(stack, issue_token("alice", "a-third-secret-nobody-configured-32+", 600), "an unknown secret")
    await _refused(stack, pairs["rsa"].token("alice", ttl=-60), "expired")
    await _refused(stack, ec_pair().token("alice"), "another P-256 key")


async def test_every_algorithm_confusion_is_401(
    make_stack: StackFactory, pairs: dict[str, KeyPair], tmp_path: Path
) -> None:
    rsa_key, ec_key, ed_key = pairs["rsa"], pairs["ec"], pairs["ed"]
    paths = [pair.write_public(tmp_path / f"{name}.pem") for name, pair in pairs.items()]
    stack = await make_stack(edge_env={"JWT_PUBLIC_KEYS": ",".join(map(str, paths))})
    body = claims("alice")
    p384 = ec.generate_private_key(ec.SECP384R1())
    attempts = {
        "alg none": forge({"alg": "none", "typ": "JWT"}, body, lambda _: b""),
        "alg none, no signature": forge({"alg": "none"}, body, lambda _: b"")[:-1],
        "HS256 keyed with the RSA PEM": forge({"alg": "HS256"}, body, hmac_with(rsa_key.public_pem())),
        "HS256 keyed with the EC PEM": forge({"alg": "HS256"}, body, hmac_with(ec_key.public_pem())),
        "HS256 keyed with the Ed25519 PEM": forge({"alg": "HS256"}, body, hmac_with(ed_key.public_pem())),
        "HS512 with the secret": forge({"alg": "HS512"}, body, hmac_with(SECRET.encode(), hashlib.sha512)),
        "PS256 with the RSA key": jwt.encode(body, rsa_key.private, algorithm="PS256"),
        "RS512 with the RSA key": jwt.encode(body, rsa_key.private, algorithm="RS512"),
        "RS384 with the RSA key": jwt.encode(body, rsa_key.private, algorithm="RS384"),
        "RS256 for the EC key (its bytes as an RSA signature)": forge(
            {"alg": "RS256"}, body, lambda data: ec_key.private.sign(data, ec.ECDSA(_sha256()))
        ),
        "ES256 signed on P-384": forge({"alg": "ES256"}, body, lambda data: _raw_ecdsa(p384, data)),
        "ES384 on P-384": jwt.encode(body, p384, algorithm="ES384"),
        "EdDSA signed with Ed448": ed448_pair().token("alice"),
        "ES256 header, RSA signature": forge(
            {"alg": "ES256"}, body, lambda data: rsa_key.private.sign(data, padding.PKCS1v15(), _sha256())
        ),
        "EdDSA header, EC signature": forge({"alg": "EdDSA"}, body, lambda data: _raw_ecdsa(ec_key.private, data)),
        "jku pointing elsewhere": jwt.encode(
            body, rsa_pair().private, algorithm="RS256", headers={"jku": "http://127.0.0.1:9/jwks"}
        ),
        "a kid no key has": rsa_pair().token("alice", kid="unknown"),
    }
    for why, token in attempts.items():
        await _refused(stack, token, why)
    await _opens(stack, rsa_key.token("alice"))  # and the honest token still works


async def test_issuer_and_audience(make_stack: StackFactory, pairs: dict[str, KeyPair], tmp_path: Path) -> None:
    path = pairs["rsa"].write_public(tmp_path / "rsa.pem")
    stack = await make_stack(
        edge_env={"JWT_PUBLIC_KEYS": str(path), "JWT_ISSUER": "https://idp.example/", "JWT_AUDIENCE": "userstream"}
    )
    key = pairs["rsa"]
    await _opens(stack, key.token(iss="https://idp.example/", aud="userstream"))
    await _opens(stack, key.token(iss="https://idp.example/", aud=["api", "userstream"]))
    await _refused(stack, key.token(iss="https://other.example/", aud="userstream"), "wrong issuer")
    await _refused(stack, key.token(aud="userstream"), "no issuer")
    await _refused(stack, key.token(iss="https://idp.example/"), "no audience")
    await _refused(stack, key.token(iss="https://idp.example/", aud="api"), "wrong audience")
    await _refused(stack, key.token(iss="https://idp.example/", aud=["api"]), "audience list without us")
    await _refused(stack, issue_token("alice", SECRET, 600), "an HS256 token without iss/aud")
    await _opens(stack, issue_token("alice", SECRET, 600, issuer="https://idp.example/", audience="userstream"))


async def test_without_audience_setting_a_token_aud_is_not_checked(
    make_stack: StackFactory, pairs: dict[str, KeyPair], tmp_path: Path
) -> None:
    stack = await make_stack(edge_env={"JWT_PUBLIC_KEYS": str(pairs["ed"].write_public(tmp_path / "ed.pem"))})
    await _opens(stack, pairs["ed"].token(aud="anything", iss="anyone"))


def test_the_edge_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("USERSTREAM_")}
    command = [str(Path(sys.executable).parent / "userstream"), "edge", "--port", "0"]
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "USERSTREAM_JWT_SECRET" in lines[0]
    assert "USERSTREAM_JWKS_URL" in lines[0]
    assert "USERSTREAM_JWT_PUBLIC_KEYS" in lines[0]
    bad = tmp_path / "not-a-key.pem"
    bad.write_text("hello")
    environment["USERSTREAM_JWT_PUBLIC_KEYS"] = str(bad)
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert str(bad) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def _sha256():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def _raw_ecdsa(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """A JWS ECDSA signature (r || s), whatever the curve."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(_sha256())))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")
