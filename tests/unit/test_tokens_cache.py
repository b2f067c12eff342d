"""The verified-token cache keeps every check a token would get without it."""

from __future__ import annotations

import time

import pytest

from userstream.tokens import TokenError, TokenVerifier, issue_token

SECRET = "unit-test-secret-long-enough-for-hs256"


def test_a_cached_token_still_expires() -> None:
    now = [time.time()]
    verifier = TokenVerifier(SECRET, clock=lambda: now[0])
    token = issue_token("alice", SECRET, ttl=60)
    assert verifier.verify(token).user_id == "alice"
    assert verifier.verify(token).user_id == "alice"  # from the cache
    now[0] += 61
    with pytest.raises(TokenError, match="expired"):
        verifier.verify(token)


def test_a_rejected_token_is_never_cached() -> None:
    verifier = TokenVerifier(SECRET)
    forged = issue_token("alice", "another-secret-long-enough-for-hs256", ttl=60)
    for _ in range(2):
        with pytest.raises(TokenError):
            verifier.verify(forged)


def test_the_cache_is_bounded() -> None:
    verifier = TokenVerifier(SECRET, max_entries=3)
    tokens = [issue_token(f"user{i}", SECRET, ttl=60) for i in range(5)]
    for token in tokens:
        verifier.verify(token)
    assert len(verifier._verified) == 3
    assert [p.user_id for p in verifier._verified.values()] == ["user2", "user3", "user4"]
