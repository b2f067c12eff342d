"""``userstream edge --workers 2``: /metrics answers for both workers, whichever one is scraped (issue 18).

The streams are spread over both workers (the test keeps opening streams
until each worker holds one, reading the workers' own metric files), then
every total must add up to what the clients received, on every scrape.
A worker killed outright takes its streams with it: its live gauges leave the
totals, its counters stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict

from tests.conftest import start_activity
from tests.support.edge import EdgeProcess, start_edge_process
from tests.support.sse import HTTPResponse, SSEStream, open_stream, request
from tests.support.stack import SECRET, start_acl_service
from userstream.activity.service import ActivityService
from userstream.embedded_nats import NatsServerProcess
from userstream.events import ActivityInput
from userstream.rpc.acl import AclClient
from userstream.rpc.activity import ActivityClient
from userstream.tokens import issue_token

pytestmark = pytest.mark.integration

MAX_STREAMS = 60  # opened at most while waiting for the second worker to take one
EVENTS = 5


def _sample(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{name}{labels} not in metrics:\n{text}"
    return float(match.group(1))


def _open_streams_by_worker(directory: Path) -> dict[int, float]:
    """Each worker's own `open_streams`, from the file it syncs into (names end in its pid)."""
    found: dict[int, float] = {}
    for path in directory.glob("gauge_livesum_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            if json.loads(key)[0] == "userstream_edge_open_streams":
                found[pid] = value
    return found


async def _metrics(edge: EdgeProcess) -> str:
    response = await request(edge.base_url, "/metrics")
    assert isinstance(response, HTTPResponse)
    assert response.status == 200
    return response.body.decode()


async def _until(condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _services(nats_url: str) -> AsyncIterator[tuple[ActivityClient, str]]:
    activity = await start_activity(nats_url)
    acl_service = await start_acl_service(nats_url)
    acl_addr = f"127.0.0.1:{acl_service.port}"
    acl = AclClient(acl_addr)
    try:
        await acl.grant_membership("alice", "acme", "member")
        yield activity.client, acl_addr
    finally:
        await acl.close()
        await acl_service.stop()
        await activity.client.close()
        service: ActivityService = activity.service
        await service.stop()


async def test_two_workers_report_the_totals_of_both(nats_server: NatsServerProcess, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    async with _services(nats_server.url) as (activity, acl_addr):
        edge = await start_edge_process(
            tmp_path / "edge.log",
            workers=2,
            standard_env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
            NATS_URL=nats_server.url,
            ACL_ADDR=acl_addr,
            JWT_SECRET=SECRET,
            METRICS_SYNC_INTERVAL="0.2",
        )
        streams: list[SSEStream] = []
        try:
            token = issue_token("alice", SECRET, 3600, now=time.time())
            while True:
                stream = await open_stream(edge.base_url, headers={"Authorization": f"Bearer {token}"})
                streams.append(stream)
                assert (await stream.next_event()).event == "offset"
                by_worker: dict[int, float] = {}

                async def synced(count: int = len(streams)) -> bool:
                    nonlocal by_worker
                    by_worker = _open_streams_by_worker(metrics_dir)
                    return sum(by_worker.values()) == count

                await _until(synced)
                if len([pid for pid, count in by_worker.items() if count > 0]) == 2:
                    break
                assert len(streams) < MAX_STREAMS, "every stream went to the same worker"

            for index in range(EVENTS):
                await activity.record(ActivityInput(type="page.updated", organization_id="acme", entity_id=f"p{index}"))
            received = 0
            for stream in streams:
                received += len(await stream.changes(EVENTS))
            assert received == EVENTS * len(streams)

            async def totals_add_up() -> bool:
                text = await _metrics(edge)
                return _sample(text, "userstream_edge_deliveries_total") == received and _sample(
                    text, "userstream_edge_open_streams"
                ) == len(streams)

            await _until(totals_add_up)
            # Whichever worker answers, the same totals: several scrapes, no sync in between needed.
            for _ in range(6):
                text = await _metrics(edge)
                assert _sample(text, "userstream_edge_deliveries_total") == received
                assert _sample(text, "userstream_edge_open_streams") == len(streams)
                assert _sample(text, "userstream_edge_events_total") == 2 * EVENTS  # once per worker
                assert _sample(text, "userstream_edge_lag_seconds_count") == 2 * EVENTS
                assert _sample(text, "userstream_edge_ready") == 1

            # A worker killed outright: its streams end, its live gauges leave the totals, its counts stay.
            victim, survivor_streams = max(by_worker.items(), key=lambda item: item[1])
            victim_streams = int(survivor_streams)
            os.kill(victim, signal.SIGKILL)

            async def gauges_forget_the_dead() -> bool:
                text = await _metrics(edge)
                return _sample(text, "userstream_edge_open_streams") == len(streams) - victim_streams

            await _until(gauges_forget_the_dead)
            assert _sample(await _metrics(edge), "userstream_edge_deliveries_total") == received
        finally:
            for stream in streams:
                await stream.close()
            await edge.stop()
