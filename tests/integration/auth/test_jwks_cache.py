"""The JWKS cache against a real HTTP server: one log line per change of state, the refetch interval, sharing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from structlog.testing import capture_logs

from tests.support.auth import FixtureServer, JwksDocument, ec_pair, rsa_pair
from userstream.auth.jwks import JwksCache

pytestmark = pytest.mark.integration


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


async def test_each_change_of_state_is_logged_once(client: httpx.AsyncClient) -> None:
    document = JwksDocument(rsa_pair().jwk("a"))
    server = await FixtureServer(document).start()
    cache = JwksCache(server.url, client, timeout=2)
    try:
        with capture_logs() as logs:
            await cache.fetch()
            await cache.fetch()  # the same set again: nothing to say
            document.status = 503
            for _ in range(3):
                await cache.fetch()
            document.status = 200
            await cache.fetch()
            document.publish(rsa_pair().jwk("a"), ec_pair().jwk("b"))
            await cache.fetch()
        events = [entry["event"] for entry in logs]
        assert events == ["auth.jwks_fetched", "auth.jwks_unreachable", "auth.jwks_fetched", "auth.jwks_fetched"]
        assert logs[2]["recovered"] is True
        assert cache.failures == 3
        assert cache.key("b") is not None
    finally:
        await server.stop()


async def test_an_unchanged_key_keeps_its_identity_and_a_removed_one_is_let_go(client: httpx.AsyncClient) -> None:
    kept, dropped = rsa_pair(), ec_pair()
    document = JwksDocument(kept.jwk("kept"), dropped.jwk("dropped"))
    server = await FixtureServer(document).start()
    cache = JwksCache(server.url, client)
    try:
        await cache.fetch()
        before, gone = cache.key("kept"), cache.key("dropped")
        assert before is not None
        assert gone is not None
        document.publish(kept.jwk("kept"))
        await cache.fetch()
        assert cache.key("kept") is before
        assert cache.holds(before)
        assert not cache.holds(gone)
    finally:
        await server.stop()


async def test_unknown_kids_refetch_at_most_once_per_interval_and_share_it(client: httpx.AsyncClient) -> None:
    server = await FixtureServer(JwksDocument(rsa_pair().jwk("a"))).start()
    now = [1000.0]
    cache = JwksCache(server.url, client, min_refetch=30, clock=lambda: now[0])
    try:
        await cache.fetch()
        assert len(server.requests) == 1
        await asyncio.gather(*(cache.refetch_for_unknown_kid() for _ in range(20)))
        assert len(server.requests) == 1, "within 30 s of the last fetch: none"
        now[0] += 31
        await asyncio.gather(*(cache.refetch_for_unknown_kid() for _ in range(20)))
        assert len(server.requests) == 2, "after 30 s: one, shared by every caller"
    finally:
        await server.stop()
