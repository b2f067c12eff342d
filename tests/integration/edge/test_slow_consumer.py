"""A stalled reader next to a fast one while 20 MB flow through an edge process (ARCHITECTURE guarantee 5).

The edge runs as ``userstream edge`` so its memory is its own: the stalled
stream must be cut off (``close`` slow-consumer, or its socket dropped once it
cannot even take that), the edge's peak RSS must stay far below what flowed,
and the fast reader must receive every event, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import RunningActivity, start_activity
from tests.support.edge import EdgeProcess, start_edge_process
from tests.support.sse import SSEStream, open_stream, request
from tests.support.stack import SECRET, start_acl_service
from userstream.embedded_nats import NatsServerProcess
from userstream.events import ActivityInput

pytestmark = pytest.mark.integration

EVENT_DATA_BYTES = 10_000
EVENTS = 2_000  # x ~10 KB = 20 MB
BATCH = 50
QUEUE_MAX_BYTES = 1_048_576


@pytest.fixture
async def services(
    nats_server: NatsServerProcess, tmp_path: Path
) -> AsyncIterator[tuple[RunningActivity, EdgeProcess]]:
    activity = await start_activity(nats_server.url)
    acl = await start_acl_service(nats_server.url)
    edge = await start_edge_process(
        tmp_path / "edge.log",
        NATS_URL=nats_server.url,
        ACL_ADDR=f"127.0.0.1:{acl.port}",
        JWT_SECRET=SECRET,
        QUEUE_MAX_BYTES=str(QUEUE_MAX_BYTES),
        CUTOFF_GRACE="1",
        CHANNEL_RING_SIZE="64",
        LOG_LEVEL="warning",
    )
    try:
        yield activity, edge
    finally:
        await edge.stop()
        await acl.stop()
        await activity.client.close()
        await activity.service.stop()


async def test_stalled_reader_is_cut_off_fast_reader_gets_everything(
    services: tuple[RunningActivity, EdgeProcess],
) -> None:
    activity, edge = services
    # Both users are public-stream readers: one channel, one NATS subscription, two streams.
    fast = await open_stream(edge.base_url, "/public/stream")
    fast.keep_raw = False
    stalled = await request(edge.base_url, "/public/stream", receive_buffer=4096)
    assert isinstance(stalled, SSEStream)
    stalled.keep_raw = False
    assert (await fast.next_event()).event == "offset"
    assert (await stalled.next_event()).event == "offset"
    baseline_peak = edge.memory_kib("VmHWM")

    data = '{"blob": "' + "x" * EVENT_DATA_BYTES + '"}'
    received: list[str] = []

    async def read_fast() -> None:
        while len(received) < EVENTS:
            event = await fast.next_event(timeout=20)
            if event.event == "change":
                received.append(event.id or "")
            elif event.event != "ping":
                raise AssertionError(f"fast reader got {event.event} {event.data}")

    reader = asyncio.get_running_loop().create_task(read_fast())
    recorded: list[str] = []
    for first in range(0, EVENTS, BATCH):
        results = await activity.client.record_many(
            [
                ActivityInput(
                    type="page.updated", organization_id="acme", entity_id=f"p{i}", data_json=data, public=True
                )
                for i in range(first, first + BATCH)
            ]
        )
        recorded += [result.cursor for result in results]
    await asyncio.wait_for(reader, 60)
    assert received == recorded

    peak_growth_mib = (edge.memory_kib("VmHWM") - baseline_peak) / 1024
    flowed_mib = EVENTS * EVENT_DATA_BYTES / 2**20
    assert peak_growth_mib < 15, f"edge peak RSS grew {peak_growth_mib:.1f} MiB while {flowed_mib:.0f} MiB flowed"

    # The stalled reader now reads: what the sockets held, then the close (or a dropped socket).
    tail: list[str] = []
    try:
        while True:
            event = await stalled.next_event(timeout=10)
            if event.event == "close":
                assert event.json() == {"reason": "slow-consumer"}
                tail.append("close")
                break
            tail.append(event.event)
    except (EOFError, ConnectionError):
        tail.append("dropped")
    assert tail[-1] in ("close", "dropped")
    assert tail.count("change") < EVENTS, "the stalled reader was cut off, not served everything"
    await stalled.close()

    metrics = await request(edge.base_url, "/metrics")
    assert not isinstance(metrics, SSEStream)
    text = metrics.body.decode()
    assert 'userstream_edge_drops_total{reason="slow-consumer"} 1.0' in text
    assert "userstream_edge_open_streams 1.0" in text
    await fast.close()
