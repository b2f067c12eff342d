"""SIGTERM to ``userstream edge``: not ready, every stream closed (shutdown) with a jittered retry, exit 0 in time."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.conftest import RunningActivity, start_activity
from tests.support.edge import EdgeProcess, start_edge_process
from tests.support.sse import SSEStream, open_stream, request, request_error
from tests.support.stack import SECRET, start_acl_service
from userstream.acl.service import AclService
from userstream.embedded_nats import NatsServerProcess
from userstream.events import ActivityInput
from userstream.tokens import issue_token

pytestmark = pytest.mark.integration

RETRY_MS = 3000
StartEdge = Callable[..., Awaitable[EdgeProcess]]


@pytest.fixture
async def services(nats_server: NatsServerProcess) -> AsyncIterator[tuple[RunningActivity, AclService]]:
    activity = await start_activity(nats_server.url)
    acl = await start_acl_service(nats_server.url)
    try:
        yield activity, acl
    finally:
        await acl.stop()
        await activity.client.close()
        await activity.service.stop()


@pytest.fixture
async def start_edge(
    services: tuple[RunningActivity, AclService], nats_server: NatsServerProcess, tmp_path: Path
) -> AsyncIterator[StartEdge]:
    started: list[EdgeProcess] = []

    async def start(**env: str) -> EdgeProcess:
        edge = await start_edge_process(
            tmp_path / f"edge{len(started)}.log",
            NATS_URL=nats_server.url,
            ACL_ADDR=f"127.0.0.1:{services[1].port}",
            JWT_SECRET=SECRET,
            LOG_LEVEL="warning",
            **env,
        )
        started.append(edge)
        return edge

    try:
        yield start
    finally:
        for edge in started:
            await edge.stop()


async def _until_delivered(edge: EdgeProcess, deliveries: int) -> None:
    """Until the edge has queued ``deliveries`` events (its metrics say so)."""
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        metrics = await request(edge.base_url, "/metrics")
        assert not isinstance(metrics, SSEStream)
        match = re.search(rb"^userstream_edge_deliveries_total (\S+)$", metrics.body, re.MULTILINE)
        if match is not None and float(match.group(1)) >= deliveries:
            return
        assert asyncio.get_running_loop().time() < deadline, "the edge did not deliver in time"
        await asyncio.sleep(0.05)


def _auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(user, SECRET, 3600)}"}


async def test_sigterm_closes_every_stream_with_a_jittered_retry_and_exits_0(start_edge: StartEdge) -> None:
    edge = await start_edge()
    streams = [await open_stream(edge.base_url, headers=_auth(f"user{i}")) for i in range(16)]
    streams += [await open_stream(edge.base_url, "/public/stream") for _ in range(4)]
    for stream in streams:
        assert (await stream.next_event()).event == "offset"
    signalled = time.monotonic()
    edge.terminate()
    retries: list[int] = []
    for stream in streams:
        events = [e for e in await stream.read_to_end(timeout=10) if e.event != "ping"]
        assert [(e.event, e.json()) for e in events] == [("close", {"reason": "shutdown"})]
        assert stream.retry is not None
        retries.append(stream.retry)
        await stream.close()
    assert await edge.wait(10) == 0
    elapsed = time.monotonic() - signalled
    assert elapsed < 5, f"exit took {elapsed:.1f} s with every client reading"
    assert all(RETRY_MS <= retry <= RETRY_MS + 5000 for retry in retries), retries
    assert len(set(retries)) > 1, "the retry hint is jittered so clients do not return in one wave"


async def test_drain_is_visible_on_readyz_and_bounded_by_the_window(
    start_edge: StartEdge, services: tuple[RunningActivity, AclService]
) -> None:
    """A client that stops reading keeps its writer busy: the drain waits for it only up to the window."""
    window = 3.0
    edge = await start_edge(DRAIN_TIMEOUT=str(window), QUEUE_MAX_BYTES=str(64 * 2**20), CUTOFF_GRACE="60")
    reading = await open_stream(edge.base_url, headers=_auth("reader"))
    stalled = await request(edge.base_url, "/public/stream", receive_buffer=4096)
    assert isinstance(stalled, SSEStream)
    assert (await reading.next_event()).event == "offset"
    assert (await stalled.next_event()).event == "offset"
    data = '{"blob": "' + "x" * 10_000 + '"}'
    activity = services[0]
    for first in range(0, 900, 50):  # ~9 MB: more than the sockets hold for the stalled reader
        await activity.client.record_many(
            [
                ActivityInput(
                    type="page.updated", organization_id="acme", entity_id=f"p{i}", data_json=data, public=True
                )
                for i in range(first, first + 50)
            ]
        )
    await _until_delivered(edge, 900)
    signalled = time.monotonic()
    edge.terminate()
    events = [e for e in await reading.read_to_end(timeout=10) if e.event != "ping"]
    assert [(e.event, e.json()) for e in events] == [("close", {"reason": "shutdown"})]
    await reading.close()
    # Still draining (the stalled writer): not ready, and no new streams.
    not_ready = await request_error(edge.base_url, "/readyz")
    assert not_ready.status == 503
    assert "draining" in not_ready.json()["error"]["message"]
    refused = await request_error(edge.base_url, headers=_auth("late"))
    assert refused.status == 503
    assert "retry-after" in refused.headers
    status = await edge.wait(window + 5)
    elapsed = time.monotonic() - signalled
    assert status == 0
    assert window - 0.5 <= elapsed < window + 1.5, f"exit after {elapsed:.1f} s for a {window} s window"
    stalled.writer.transport.abort()
    await asyncio.sleep(0)
