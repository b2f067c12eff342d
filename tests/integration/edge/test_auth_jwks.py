"""CONTRACT §6 with a real JWKS server: new keys without a restart, outages, never fetched, rotation, `use`, `jku`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import jwt
import pytest

from tests.integration.edge.conftest import StackFactory
from tests.support.auth import FixtureServer, JwksDocument, ec_pair, ed25519_pair, rsa_pair
from tests.support.edge import wait_until
from tests.support.sse import HTTPResponse, SSEStream, open_stream, request, request_error
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture
async def jwks() -> AsyncIterator[tuple[FixtureServer, JwksDocument]]:
    document = JwksDocument()
    server = await FixtureServer(document).start()
    try:
        yield server, document
    finally:
        await server.stop()


async def _status(stack: Stack, token: str) -> int:
    result = await request(stack.base_url, "/me/stream", headers={"Authorization": f"Bearer {token}"})
    if isinstance(result, SSEStream):
        await result.close()
        return result.response.status
    return result.status


async def test_a_key_published_later_is_picked_up_without_a_restart(
    make_stack: StackFactory, jwks: tuple[FixtureServer, JwksDocument]
) -> None:
    server, document = jwks
    old, new = rsa_pair(), ec_pair()
    document.publish(old.jwk("old"))
    stack = await make_stack(edge_env={"JWKS_URL": server.url, "JWKS_MIN_REFETCH": "0.5"})
    await wait_until(lambda: stack.edge.runtime.auth.jwks is not None and stack.edge.runtime.auth.jwks.fetched, 10)
    assert await _status(stack, old.token(kid="old")) == 200
    assert await _status(stack, new.token(kid="new")) == 401  # not published yet
    document.publish(old.jwk("old"), new.jwk("new"))
    deadline = asyncio.get_running_loop().time() + 10
    while await _status(stack, new.token(kid="new")) != 200:  # once the 0.5 s refetch interval has passed
        assert asyncio.get_running_loop().time() < deadline, "the new key was never picked up"
        await asyncio.sleep(0.1)


async def test_unknown_kids_in_a_storm_cost_at_most_one_fetch(
    make_stack: StackFactory, jwks: tuple[FixtureServer, JwksDocument]
) -> None:
    server, document = jwks
    key = ed25519_pair()
    document.publish(key.jwk("k1"))
    stack = await make_stack(edge_env={"JWKS_URL": server.url})  # the default 30 s between refetches
    await wait_until(lambda: len(server.requests) >= 1, 10)
    assert await _status(stack, key.token(kid="k1")) == 200
    before = len(server.requests)
    strangers = [rsa_pair(), ec_pair()]
    statuses = await asyncio.gather(
        *(_status(stack, strangers[i % 2].token(f"user{i}", kid=f"nope{i}")) for i in range(40))
    )
    assert set(statuses) == {401}
    assert len(server.requests) - before <= 1, "concurrent unknown kids share one fetch, then 30 s of none"


async def test_keys_not_for_signing_are_ignored_and_jku_is_never_followed(
    make_stack: StackFactory, jwks: tuple[FixtureServer, JwksDocument]
) -> None:
    server, document = jwks
    signing, encryption, mislabelled = rsa_pair(), rsa_pair(), ec_pair()
    decoy_document = JwksDocument(encryption.jwk("enc"))
    decoy = await FixtureServer(decoy_document).start()
    try:
        document.publish(
            signing.jwk("sig", use="sig"),
            encryption.jwk("enc", use="enc"),
            mislabelled.jwk("mis", alg="RS256"),  # an EC key the set calls RS256: trusted by neither reading
            {"kty": "oct", "kid": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            "not even an object",
        )
        stack = await make_stack(edge_env={"JWKS_URL": server.url})
        await wait_until(lambda: stack.edge.runtime.auth.jwks is not None and stack.edge.runtime.auth.jwks.fetched, 10)
        assert await _status(stack, signing.token(kid="sig")) == 200
        assert await _status(stack, encryption.token(kid="enc")) == 401
        assert await _status(stack, mislabelled.token(kid="mis")) == 401
        oct_token = jwt.encode(
            {"sub": "alice", "exp": 2**40},
            "secret-secret-secret-secret-secret",
            algorithm="HS256",
            headers={"kid": "oct"},
        )
        assert await _status(stack, oct_token) == 401
        with_jku = jwt.encode(
            {"sub": "alice", "exp": 2**40}, encryption.private, algorithm="RS256",
            headers={"kid": "enc", "jku": decoy.url, "x5u": decoy.url},
        )  # fmt: skip
        assert await _status(stack, with_jku) == 401
        assert decoy.requests == [], "a URL inside a token was fetched"
    finally:
        await decoy.stop()


async def test_an_outage_keeps_the_last_keys_serving(
    make_stack: StackFactory, jwks: tuple[FixtureServer, JwksDocument]
) -> None:
    server, document = jwks
    key = rsa_pair()
    document.publish(key.jwk("k1"))
    stack = await make_stack(edge_env={"JWKS_URL": server.url, "JWKS_REFRESH": "1", "JWKS_MIN_REFETCH": "0"})
    cache = stack.edge.runtime.auth.jwks
    assert cache is not None
    await wait_until(lambda: cache.fetched, 10)
    await server.stop()  # connection refused from now on
    failures = cache.failures
    assert await _status(stack, rsa_pair().token(kid="other")) == 401  # a refetch, which fails
    await wait_until(lambda: cache.failures > failures + 1, 10)  # and the periodic ones fail too
    assert await _status(stack, key.token("bob", kid="k1")) == 200  # a token never seen: the cached key verifies it
    metrics = await request(stack.base_url, "/metrics")
    assert isinstance(metrics, HTTPResponse)
    ages = [line for line in metrics.body.decode().splitlines() if line.startswith("userstream_edge_jwks_age_seconds")]
    assert ages, metrics.body[:500]
    assert float(ages[0].split()[-1]) >= 0, ages
    document.status = 500
    await server.start()  # back, but answering 500: still the last good set
    await wait_until(lambda: len(server.requests) >= 2, 10)
    assert await _status(stack, key.token("carol", kid="k1")) == 200


async def test_never_fetched_is_503_then_200_once_reachable(make_stack: StackFactory) -> None:
    key = ed25519_pair()
    server = FixtureServer(JwksDocument(key.jwk("k1")))  # its port is chosen, nothing listens yet
    stack = await make_stack(edge_env={"JWKS_URL": server.url, "JWKS_TIMEOUT": "0.5"})
    try:
        refused = await request_error(stack.base_url, headers={"Authorization": f"Bearer {key.token(kid='k1')}"})
        assert refused.status == 503
        assert refused.headers.get("retry-after", "").isdigit()
        assert refused.json()["error"]["code"] == "unavailable"
        # Tokens no JWKS key could verify are still judged at once.
        assert await _status(stack, stack.token("alice")) == 200
        assert await _status(stack, "not.a.token") == 401
        await server.start()
        deadline = asyncio.get_running_loop().time() + 15  # the background fetch retries, backing off from 1 s
        while (status := await _status(stack, key.token(kid="k1"))) != 200:
            assert status == 503
            assert asyncio.get_running_loop().time() < deadline, "the key set was never fetched"
            await asyncio.sleep(0.1)
    finally:
        await server.stop()


async def test_a_key_removed_from_the_set_admits_no_new_stream_but_cuts_none(
    make_stack: StackFactory, jwks: tuple[FixtureServer, JwksDocument]
) -> None:
    server, document = jwks
    retired, current = rsa_pair(), rsa_pair()
    document.publish(retired.jwk("2026-11"), current.jwk("2026-12"))
    stack = await make_stack(edge_env={"JWKS_URL": server.url, "JWKS_MIN_REFETCH": "0"})
    cache = stack.edge.runtime.auth.jwks
    assert cache is not None
    await wait_until(lambda: cache.fetched, 10)
    token = retired.token(kid="2026-11")
    open_one = await open_stream(stack.base_url, headers={"Authorization": f"Bearer {token}"})
    try:
        assert (await open_one.next_event()).event == "offset"
        assert await _status(stack, token) == 200  # verified before: cached
        document.publish(current.jwk("2026-12"))
        fetches = cache.fetches
        assert await _status(stack, current.token(kid="unknown-yet")) == 401  # an unknown kid: a refetch
        assert cache.fetches > fetches
        assert await _status(stack, token) == 401, "a cached verdict outlived the key that produced it"
        assert await _status(stack, current.token(kid="2026-12")) == 200
        await stack.page("acme", "p1")  # the open stream is still served (alice is no member: nothing arrives)
        await open_one.no_change_within(0.3)
        assert not open_one.ended
    finally:
        await open_one.close()
