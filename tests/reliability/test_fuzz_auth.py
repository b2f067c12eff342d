"""Fuzzing the edge's authentication (CONTRACT §6) with random key sets and random session-hook answers.

Beside the edge (its own process, as deployed) run a real JWKS server and a
real hook server whose answers hypothesis changes between requests:

- a token signed by one of three keys (RSA, P-256, Ed25519) under a ``kid`` never
  used before, so the edge fetches the set again for it (``JWKS_MIN_REFETCH=0``),
  against a random document: the key intact, damaged, relabelled, mixed with
  random entries, or the document not JSON, not a key set, not a 200. A stream
  only if the document really publishes that key for signing, else 401 — a set
  has been fetched, so never 503 and never a 500;
- no token at all, against a random hook answer: 200 and a stream only for a
  well-formed answer with a valid user id and an ``expires_at`` not past; 401 for
  401/403 (and a session already over); 503 with Retry-After for anything else.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.conftest import Deploy
from tests.reliability.test_fuzz_http import CODES, Request, send
from tests.support.auth import FixtureServer, KeyPair, ec_pair, ed25519_pair, rsa_pair
from userstream.embedded_nats import NatsServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

EXAMPLES = 150
_ALGORITHMS = {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@dataclass
class Scene:
    """What the JWKS and hook servers answer right now; the fuzzer sets it before each request."""

    jwks_status: int = 200
    jwks_body: bytes = b'{"keys": []}'
    hook_status: int = 200
    hook_body: bytes = b"{}"

    def jwks(self, scope: dict[str, Any], body: bytes) -> tuple[int, bytes]:
        return self.jwks_status, self.jwks_body

    def hook(self, scope: dict[str, Any], body: bytes) -> tuple[int, bytes]:
        return self.hook_status, self.hook_body


@st.composite
def key_set_cases(draw: st.DrawFn, pairs: list[KeyPair]) -> tuple[int, bytes, KeyPair, str, bool]:
    """(status, document, signing key, kid, whether the document publishes that key for signing)."""
    pair = draw(st.sampled_from(pairs))
    kid = "k-" + uuid.uuid4().hex
    jwk = pair.jwk(kid)
    good = True
    damage = draw(
        st.sampled_from(["none", "use-sig", "alg-right", "use-enc", "alg-wrong", "kty", "material", "drop", "kid"])
    )
    if damage == "use-sig":
        jwk["use"] = "sig"
    elif damage == "alg-right":
        jwk["alg"] = _ALGORITHMS[jwk["kty"]]
    elif damage == "use-enc":
        jwk["use"], good = draw(st.sampled_from(["enc", "", "SIG"])), False
    elif damage == "alg-wrong":
        jwk["alg"], good = draw(st.sampled_from(["HS256", "PS256", "RS512", "ES384", "none", "Ed25519"])), False
    elif damage == "kty":
        jwk["kty"], good = draw(st.sampled_from(["oct", "rsa", "EC" if jwk["kty"] != "EC" else "RSA", ""])), False
    elif damage == "material":
        member = "n" if jwk["kty"] == "RSA" else "x"
        jwk[member], good = draw(st.sampled_from(["", "AAAA", "!!", jwk[member][:-4] + "AAAA"])), False
    elif damage == "drop":
        good = False
    elif damage == "kid":
        jwk["kid"], good = draw(st.sampled_from([kid + "x", 7, None])), False
    others = draw(st.lists(st.one_of(_json, st.sampled_from([p.jwk("other-" + uuid.uuid4().hex) for p in pairs])),
                           max_size=3))  # fmt: skip
    entries = [*others]
    if damage != "drop":
        entries.insert(draw(st.integers(0, len(others))), jwk)
    shape = draw(st.sampled_from(["set", "set", "set", "set", "not-json", "not-a-set", "keys-not-list", "status"]))
    status, body = 200, json.dumps({"keys": entries}).encode()
    if shape == "not-json":
        body, good = draw(st.binary(max_size=40)).replace(b"{", b"("), False
    elif shape == "not-a-set":
        body, good = json.dumps(draw(_json.filter(lambda v: not isinstance(v, dict)))).encode(), False
    elif shape == "keys-not-list":
        body, good = json.dumps({"keys": {"0": jwk}}).encode(), False
    elif shape == "status":
        status, good = draw(st.sampled_from([201, 204, 301, 304, 401, 404, 500, 503])), False
    return status, body, pair, kid, good


@st.composite
def hook_cases(draw: st.DrawFn) -> tuple[int, bytes, int]:
    """(hook status, hook body, the status the stream request must get)."""
    # Half the answers well formed, so that the accepting path is fuzzed as much as the refusing ones.
    if draw(st.booleans()):
        user_id = draw(st.sampled_from(["alice", "u_1-2", "x" * 128, "bob"]))
        expires_at = draw(st.sampled_from([None, time.time() + 3600, 4102444800]))
        return 200, json.dumps({"user_id": user_id, "expires_at": expires_at}).encode(), 200
    status = draw(st.sampled_from([200, 200, 200, 200, 401, 403, 201, 204, 302, 400, 404, 500, 502, 503]))
    now = time.time()
    user = draw(st.one_of(st.sampled_from(["alice", "u_1-2", "x" * 128]), st.text(max_size=8), _json))
    expires = draw(
        st.one_of(st.none(), st.just(now + 3600), st.just(now - 3600), st.just(1), st.booleans(), st.text(max_size=4))
    )
    kind = draw(st.sampled_from(["shape", "shape", "shape", "missing", "json", "bytes"]))
    answer: Any = {"user_id": user, "expires_at": expires}
    if kind == "missing":
        answer.pop(draw(st.sampled_from(["user_id", "expires_at"])))
    elif kind == "json":
        answer = draw(_json)
    body = draw(st.binary(max_size=30)) if kind == "bytes" else json.dumps(answer).encode()
    if status in (401, 403):
        return status, body, 401
    if status != 200 or not isinstance(answer, dict) or kind == "bytes":
        return status, body, 503
    user_id, expires_at = answer.get("user_id"), answer.get("expires_at", "missing")
    valid_user = (
        isinstance(user_id, str)
        and 0 < len(user_id) <= 128
        and user_id.isascii()
        and all(c.isalnum() or c in "_-" for c in user_id)
    )
    if (
        not valid_user
        or isinstance(expires_at, bool)
        or not (expires_at is None or isinstance(expires_at, int | float))
    ):
        return status, body, 503
    if expires_at is not None and expires_at <= time.time():
        return status, body, 401
    return status, body, 200


def fuzz(base_url: str, scene: Scene, pairs: list[KeyPair], seen: Counter[str]) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=key_set_cases(pairs))
    def key_sets(case: tuple[int, bytes, KeyPair, str, bool]) -> None:
        scene.jwks_status, scene.jwks_body, pair, kid, good = case
        user = "f" + uuid.uuid4().hex[:12]  # a new user each time: the per-user stream limit never answers
        status, headers, body = send(
            base_url, Request("/me/stream", headers={"Authorization": f"Bearer {pair.token(user, kid=kid)}"})
        )
        seen[f"jwks: expected {200 if good else 401}, got {status}"] += 1
        _check(status, headers, body, 200 if good else 401)

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        case=hook_cases(), cookie=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)
    )
    def hook_answers(case: tuple[int, bytes, int], cookie: str) -> None:
        scene.hook_status, scene.hook_body, expected = case
        headers = {"Cookie": f"session={cookie}"} if cookie else {}
        status, response_headers, body = send(base_url, Request("/me/stream", headers=headers))
        seen[f"hook: expected {expected}, got {status}"] += 1
        _check(status, response_headers, body, expected)

    key_sets()
    hook_answers()


def _check(status: int, headers: dict[str, str], body: bytes, expected: int) -> None:
    if expected == 200 and status == 429:
        return  # the hook names one of a few users: their stream limit may answer first
    assert status == expected, (status, body[:300])
    if status == 200:
        assert headers.get("content-type", "").startswith("text/event-stream"), headers
        return
    error = json.loads(body)["error"]
    assert error["code"] == CODES[status], error
    if status == 503:
        assert headers.get("retry-after", "").isdigit(), headers


async def test_fuzz_key_sets_and_hook_answers(deploy: Deploy, nats_server: NatsServerProcess) -> None:
    pairs = [rsa_pair(), ec_pair(), ed25519_pair()]
    scene = Scene(jwks_body=json.dumps({"keys": [pairs[0].jwk("first")]}).encode())
    jwks = await FixtureServer(scene.jwks).start()
    hook = await FixtureServer(scene.hook).start()
    env = {"JWKS_URL": jwks.url, "JWKS_MIN_REFETCH": "0", "AUTH_HOOK_URL": hook.url, "AUTH_HOOK_CACHE_TTL": "0"}
    try:
        async with deploy(nats_server.url, edges=1, env=env) as deployment:
            edge = deployment.edges[0]
            seen: Counter[str] = Counter()
            await asyncio.to_thread(fuzz, edge.base_url, scene, pairs, seen)
            print(json.dumps(dict(sorted(seen.items())), indent=2))
            assert edge.running, edge.log_text()[-2000:]
            assert "edge.unexpected_error" not in edge.log_text()
            assert any(key.startswith("jwks: expected 200, got 200") for key in seen)
            assert any(key.startswith("hook: expected 200, got 200") for key in seen)
    finally:
        await hook.stop()
        await jwks.stop()
