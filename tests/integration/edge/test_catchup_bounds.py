"""A resume over a long retention costs the edge a bounded amount of memory and never stalls the worker (issue 19).

The edge runs as its own process (``userstream edge``) so its RSS is its own.
The backlog is stored straight into the log with pipelined publishes
(``benchmarks/_backlog.py``). The resuming client reads a few events, stops
reading for a while (the edge must not read ahead of it), then reads to the
end; a second user's stream on the same worker must keep its pings and live
events on time throughout.

Before paging, the whole range was read into one list and decoded in one
loop: about 1.3 KB of RSS per event (60,000 events: ~80 MB) and a loop that
did nothing else meanwhile.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from benchmarks._backlog import ResumeMeasurement, fill, measure_resume
from tests.conftest import RunningActivity
from tests.support.edge import EdgeProcess, start_edge_process
from tests.support.sse import SSEStream, open_stream
from tests.support.stack import SECRET, start_acl_service
from userstream.acl.service import AclService
from userstream.embedded_nats import NatsServerProcess
from userstream.events import ActivityInput
from userstream.rpc.acl import AclClient
from userstream.tokens import issue_token

pytestmark = pytest.mark.integration

# The edge's RSS may grow by at most this much during the resume, whatever its length. What it holds is a
# page of the catch-up (queue_max_bytes / 4 = 256 KiB, at most 256 events), the kernel's socket buffer and
# the allocator's slack; 24 MiB leaves room for the allocator on a loaded machine.
RSS_GROWTH_BOUND_KIB = 24 * 1024
PING_INTERVAL = 0.25
# A ping may come this late on a loaded, shared machine; a worker frozen by a catch-up misses it by seconds.
MAX_PING_GAP = 2.0
MAX_WITNESS_LATENCY = 2.0


class _Setup:
    def __init__(self, nats_url: str, activity: RunningActivity, acl: AclService, edge: EdgeProcess) -> None:
        self.nats_url = nats_url
        self.activity = activity
        self.acl = acl
        self.edge = edge

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(user, SECRET, 3600)}"}


@pytest.fixture
async def setup(nats_server: NatsServerProcess, activity: RunningActivity, tmp_path: Path) -> AsyncIterator[_Setup]:
    acl = await start_acl_service(nats_server.url)
    edge = await start_edge_process(
        tmp_path / "edge.log",
        NATS_URL=nats_server.url,
        ACL_ADDR=f"127.0.0.1:{acl.port}",
        JWT_SECRET=SECRET,
        PING_INTERVAL=str(PING_INTERVAL),
    )
    try:
        yield _Setup(nats_server.url, activity, acl, edge)
    finally:
        await edge.stop()
        await acl.stop()


async def _resume_over(setup: _Setup, events: int, *, public: bool) -> ResumeMeasurement:
    acl = AclClient(f"127.0.0.1:{setup.acl.port}")
    try:
        await acl.grant_membership("reader", "big", "member")
        await acl.grant_membership("watcher", "small", "member")
    finally:
        await acl.close()
    start = await setup.activity.client.get_cursor()
    last = await fill(setup.nats_url, "ACTIVITY", "big", events, public=public)
    assert last >= events

    async def open_resume() -> SSEStream:
        headers = {"Last-Event-ID": start}
        if public:
            return await open_stream(setup.edge.base_url, "/public/stream", headers=headers)
        return await open_stream(setup.edge.base_url, headers={**headers, **setup.auth("reader")})

    async def open_witness() -> SSEStream:
        return await open_stream(setup.edge.base_url, headers=setup.auth("watcher"))

    async def record_for_witness() -> str:
        return await _page(setup, "small")

    measurement = await measure_resume(
        edge_pid=setup.edge.pid,
        open_resume=open_resume,
        open_witness=open_witness,
        record_for_witness=record_for_witness,
        events=events,
    )
    print(  # the numbers behind the assertions, for the log of a run (-s)
        f"resume over {events} events: RSS {measurement.baseline_kib} KiB -> peak {measurement.peak_kib} KiB "
        f"(+{measurement.growth_kib} KiB), {measurement.delivered} delivered in {measurement.seconds:.1f} s, "
        f"max ping gap {measurement.max_ping_gap:.2f} s, witness event {measurement.witness_event_latency:.2f} s"
    )
    return measurement


async def _page(setup: _Setup, organization: str) -> str:
    result = await setup.activity.client.record(
        ActivityInput(type="page.updated", organization_id=organization, entity_id="p-witness")
    )
    return result.cursor


def _assert_bounded(measurement: ResumeMeasurement) -> None:
    assert measurement.delivered == measurement.events
    assert measurement.growth_kib < RSS_GROWTH_BOUND_KIB, measurement
    assert measurement.witness_pings > 0
    assert measurement.max_ping_gap < MAX_PING_GAP, measurement
    assert measurement.witness_event_latency < MAX_WITNESS_LATENCY, measurement


async def test_member_resume_over_60000_events_is_bounded(setup: _Setup) -> None:
    _assert_bounded(await _resume_over(setup, 60_000, public=False))


async def test_public_resume_within_the_horizon_is_bounded(setup: _Setup) -> None:
    _assert_bounded(await _resume_over(setup, 60_000, public=True))


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_member_resume_over_500000_events_is_bounded(setup: _Setup) -> None:
    _assert_bounded(await _resume_over(setup, 500_000, public=False))


async def test_public_resume_beyond_the_horizon_must_refetch(setup: _Setup, tmp_path: Path) -> None:
    edge = await start_edge_process(
        tmp_path / "edge-horizon.log",
        NATS_URL=setup.nats_url,
        ACL_ADDR=f"127.0.0.1:{setup.acl.port}",
        JWT_SECRET=SECRET,
        PUBLIC_RESUME_HORIZON="50",
    )
    try:
        start = await setup.activity.client.get_cursor()
        await fill(setup.nats_url, "ACTIVITY", "big", 40, public=True)
        async with await open_stream(edge.base_url, "/public/stream", headers={"Last-Event-ID": start}) as near:
            assert (await near.events_until(lambda event: event.event == "offset"))[-1].json()["resumed"] is True
        await fill(setup.nats_url, "ACTIVITY", "big", 20, public=True)
        async with await open_stream(edge.base_url, "/public/stream", headers={"Last-Event-ID": start}) as far:
            refetch = await far.next_event()
            assert refetch.event == "must-refetch"
            assert refetch.json() == {"reason": "cursor-expired"}
        # Members resume from anywhere in the retention: the horizon is the anonymous stream's.
        member = await open_stream(edge.base_url, headers={"Last-Event-ID": start, **setup.auth("reader")})
        async with member:
            assert (await member.events_until(lambda event: event.event == "offset"))[-1].event == "offset"
    finally:
        await edge.stop()
