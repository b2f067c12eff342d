"""The verified-token cache keeps every check a token would get without it."""

from __future__ import annotations

import time

import pytest

from userstream.auth.keys import secret_key
from userstream.auth.verifier import TokenVerifier
from userstream.tokens import TokenError, issue_token

SECRET = "unit-test-secret-long-enough-for-hs256"


async def test_a_cached_token_still_expires() -> None:
    now = [time.time()]
    verifier = TokenVerifier([secret_key(SECRET, "test")], clock=lambda: now[0])
    token = issue_token("alice", SECRET, ttl=60)
    assert (await verifier.verify(token)).user_id == "alice"
    assert (await verifier.verify(token)).user_id == "alice"  # from the cache
    now[0] += 61
    with pytest.raises(TokenError, match="expired"):
        await verifier.verify(token)


async def test_a_rejected_token_is_never_cached() -> None:
    verifier = TokenVerifier([secret_key(SECRET, "test")])
    forged = issue_token("alice", "another-secret-long-enough-for-hs256", ttl=60)
    for _ in range(2):
        with pytest.raises(TokenError):
            await verifier.verify(forged)


async def test_the_cache_is_bounded() -> None:
    verifier = TokenVerifier([secret_key(SECRET, "test")], max_entries=3)
    tokens = [issue_token(f"user{i}", SECRET, ttl=60) for i in range(5)]
    for token in tokens:
        await verifier.verify(token)
    assert len(verifier._verified) == 3
    assert [v.principal.user_id for v in verifier._verified.values()] == ["user2", "user3", "user4"]
