"""/healthz, /readyz, /metrics, CORS, and keepalive pings (CONTRACT §5, issue 4)."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.integration.edge.conftest import StackFactory
from tests.support.sse import HTTPResponse, SSEStream, request
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

EDGE_METRICS = (
    "userstream_edge_open_streams",
    "userstream_edge_queued_bytes",
    "userstream_edge_channels",
    "userstream_edge_events_total",
    "userstream_edge_deliveries_total",
    "userstream_edge_drops_total",
    "userstream_edge_gap_repairs_total",
    "userstream_edge_lag_seconds_bucket",
)


async def _get(stack: Stack, path: str, **kwargs: object) -> HTTPResponse:
    response = await request(stack.base_url, path, **kwargs)  # type: ignore[arg-type]
    assert isinstance(response, HTTPResponse)
    return response


def _sample(text: str, name: str) -> float:
    match = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{name} not in metrics"
    return float(match.group(1))


async def test_health_and_readiness(stack: Stack) -> None:
    health = await _get(stack, "/healthz")
    assert health.status == 200
    assert health.json() == {"status": "ok"}
    ready = await _get(stack, "/readyz")
    assert ready.status == 200
    assert ready.json()["status"] == "ready"


async def test_metrics_count_streams_events_and_deliveries(stack: Stack) -> None:
    await stack.acl.grant_membership("alice", "acme", "member")
    await stack.acl.grant_membership("bob", "acme", "member")
    async with await stack.stream("alice") as alice, await stack.stream("bob") as bob:
        await alice.next_event()
        await bob.next_event()
        for _ in range(3):
            await stack.page("acme")
        await alice.changes(3)
        await bob.changes(3)
        response = await _get(stack, "/metrics")
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = response.body.decode()
        for name in EDGE_METRICS:
            assert re.search(rf"^{name}[ {{]", text, re.MULTILINE), name
        assert _sample(text, "userstream_edge_open_streams") == 2
        assert _sample(text, "userstream_edge_events_total") >= 3  # once per worker, not per stream
        assert _sample(text, "userstream_edge_deliveries_total") >= 6
        assert _sample(text, "userstream_edge_lag_seconds_count") >= 3
        assert _sample(text, "userstream_edge_channels") == 2  # the user feed (user.*), org.acme


async def test_keepalive_pings_at_the_interval(stack: Stack) -> None:
    """The stack's edge pings every 0.5 s: ``event: ping`` with ``data: {}``."""
    async with await stack.stream("alice") as stream:
        assert (await stream.next_event()).event == "offset"
        loop_time = asyncio.get_running_loop().time
        started = loop_time()
        pings = [await stream.next_event(timeout=2) for _ in range(3)]
        elapsed = loop_time() - started
        assert [ping.event for ping in pings] == ["ping"] * 3
        assert all(ping.data == "{}" for ping in pings)
        assert 0.5 <= elapsed < 5
        assert b"event: ping\ndata: {}\n\n" in stream.raw


async def test_cors_with_credentials_when_origins_are_set(make_stack: StackFactory) -> None:
    stack = await make_stack(edge_env={"CORS_ORIGINS": "https://app.example, https://admin.example"})
    origin = "https://app.example"
    result = await request(stack.base_url, "/me/stream", headers={**stack.auth("alice"), "Origin": origin})
    assert isinstance(result, SSEStream)
    headers = result.response.headers
    assert headers["access-control-allow-origin"] == origin
    assert headers["access-control-allow-credentials"] == "true"
    await result.close()
    # Cookie auth from the browser: a preflight for the credentialed request.
    preflight = await request(
        stack.base_url,
        "/me/stream",
        method="OPTIONS",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "last-event-id",
        },
    )
    assert isinstance(preflight, HTTPResponse)
    assert preflight.status in (200, 204)
    assert preflight.headers["access-control-allow-origin"] == origin
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "GET" in preflight.headers["access-control-allow-methods"]
    # An origin not listed gets no CORS grant.
    other = await request(
        stack.base_url, "/me/stream", headers={**stack.auth("alice"), "Origin": "https://evil.example"}
    )
    other_headers = other.response.headers if isinstance(other, SSEStream) else other.headers
    assert "access-control-allow-origin" not in other_headers
    if isinstance(other, SSEStream):
        await other.close()


async def test_no_cors_headers_by_default(stack: Stack) -> None:
    result = await request(
        stack.base_url, "/me/stream", headers={**stack.auth("alice"), "Origin": "https://app.example"}
    )
    assert isinstance(result, SSEStream)
    assert "access-control-allow-origin" not in result.response.headers
    await result.close()
