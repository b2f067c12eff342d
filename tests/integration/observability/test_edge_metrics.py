"""The edge's refusal counters, as an operator reads them on /metrics (issue 18)."""

from __future__ import annotations

import re

import pytest

from tests.support.sse import HTTPResponse, open_stream, request, request_error
from tests.support.stack import start_stack
from userstream.cursor import SEQUENCE_SPAN, parse_cursor
from userstream.embedded_nats import NatsServerProcess

pytestmark = pytest.mark.integration


def _sample(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_auth_failures_and_must_refetch_are_counted_by_reason(nats_server: NatsServerProcess) -> None:
    stack = await start_stack(nats_server.url)
    try:
        assert (await request_error(stack.base_url)).status == 401  # no token
        assert (await request_error(stack.base_url, headers={"Authorization": "Basic abc"})).status == 401
        assert (await request_error(stack.base_url, headers={"Authorization": "Bearer not-a-jwt"})).status == 401
        expired = {"Authorization": f"Bearer {stack.token('alice', ttl=-10)}"}
        assert (await request_error(stack.base_url, headers=expired)).status == 401
        cursor = parse_cursor(await stack.page("acme"))
        ahead = str(cursor.log_id * SEQUENCE_SPAN + cursor.sequence + 1000)
        async with await stack.stream("alice", last_event_id=ahead) as refused:
            assert [event.event for event in await refused.read_to_end()] == ["must-refetch"]
        async with await open_stream(stack.base_url, "/public/stream", query={"offset": ahead}) as public:
            await public.read_to_end()
        async with await stack.stream("alice") as alice:  # a refetch is answered before acl is asked; this asks
            assert (await alice.next_event()).event == "offset"

        response = await request(stack.base_url, "/metrics")
        assert isinstance(response, HTTPResponse)
        text = response.body.decode()
        for reason in ("missing", "malformed", "invalid", "expired"):
            assert _sample(text, f'userstream_edge_auth_failures_total{{reason="{reason}"}}') == 1, reason
        assert _sample(text, 'userstream_edge_must_refetch_total{reason="cursor-unknown"}') == 2
        assert _sample(text, "userstream_edge_nats_reconnects_total") == 0
        assert _sample(text, "userstream_edge_acl_seconds_count") == 1  # alice's connect asked acl once
        assert _sample(text, "userstream_edge_oldest_undelivered_seconds") == 0
    finally:
        await stack.stop()
