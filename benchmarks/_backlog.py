"""A long retained backlog, written fast, and a resume over it measured from outside the edge.

``fill`` stores ``count`` events of one organization straight into the log
with pipelined JetStream publishes (thousands in flight): half a million in
seconds, where recording them through the activity service takes minutes.
The bodies are what the activity service writes (``encode_body``).

``measure_resume`` resumes one client over the backlog while a second,
unrelated stream (the *witness*) is open on the same edge, and samples the
edge process's RSS and the witness's pings and events as it goes: the bound on
memory and the event loop's responsiveness during a catch-up (issue 19). The
resuming client first stops reading after a few events (a stalled client: the
edge must not read ahead of it), then reads to the end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import nats

from userstream.eventlog.subjects import PUBLIC_HEADER, org_subject
from userstream.events import ActivityInput, Limits, encode_body, validate_activity
from userstream.policy import default_policy

_IN_FLIGHT = 4000
_TEXT = "x" * 180  # ~300-byte events, like the other benchmarks


async def fill(nats_url: str, stream: str, organization_id: str, count: int, *, public: bool = False) -> int:
    """Store ``count`` ``page.updated`` events of ``organization_id``; returns the last sequence."""
    body = encode_body(
        validate_activity(
            ActivityInput(
                type="page.updated",
                organization_id=organization_id,
                entity_id="p-backlog",
                data_json='{"text":"' + _TEXT + '"}',
                changed_keys=("text",),
                public=public,
            ),
            default_policy(),
            Limits(),
        )
    )
    headers = {PUBLIC_HEADER: "1"} if public else None
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream(publish_async_max_pending=_IN_FLIGHT, timeout=30.0)
        subject = org_subject(organization_id)
        for _ in range(count):
            await js.publish_async(subject, body, headers=headers)
        await js.publish_async_completed()
        info = await client.jsm().stream_info(stream)
        return int(info.state.last_seq)
    finally:
        await client.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise KeyError("VmRSS")


@dataclass
class ResumeMeasurement:
    """What one resume over the backlog cost the edge, and what the witness saw meanwhile."""

    events: int
    baseline_kib: int
    peak_kib: int = 0
    delivered: int = 0
    seconds: float = 0.0
    witness_pings: int = 0
    # The longest wait between two pings of the witness (its interval, when the loop keeps up).
    max_ping_gap: float = 0.0
    # Seconds from recording an event for the witness to its arrival, during the catch-up.
    witness_event_latency: float = 0.0
    samples: list[int] = field(default_factory=list, repr=False)

    @property
    def growth_kib(self) -> int:
        return self.peak_kib - self.baseline_kib


class EventSource(Protocol):
    """An open stream (``tests.support.sse.SSEStream``, ``benchmarks`` readers)."""

    keep_raw: bool

    async def next_event(self, timeout: float = ...) -> Any: ...

    async def close(self) -> None: ...


async def _sample(pid: int, into: ResumeMeasurement) -> None:
    while True:
        value = rss_kib(pid)
        into.samples.append(value)
        into.peak_kib = max(into.peak_kib, value)
        await asyncio.sleep(0.05)


class _Witness:
    """Reads the witness stream throughout: the gaps between its pings, and when its event arrives."""

    def __init__(self, stream: EventSource, into: ResumeMeasurement) -> None:
        self.stream = stream
        self.into = into
        self.sent = 0.0
        self.arrived = asyncio.Event()

    async def run(self) -> None:
        last = time.monotonic()
        while True:
            event = await self.stream.next_event(60.0)
            now = time.monotonic()
            if event.event == "ping":
                self.into.witness_pings += 1
                self.into.max_ping_gap = max(self.into.max_ping_gap, now - last)
                last = now
            elif event.event == "change" and self.sent:
                self.into.witness_event_latency = now - self.sent
                self.arrived.set()


async def measure_resume(
    *,
    edge_pid: int,
    open_resume: Callable[[], Awaitable[EventSource]],
    open_witness: Callable[[], Awaitable[EventSource]],
    record_for_witness: Callable[[], Awaitable[object]],
    events: int,
    stall_seconds: float = 3.0,
    read_timeout: float = 60.0,
) -> ResumeMeasurement:
    """Resume over ``events`` events while a witness stream is open; see the module docstring."""
    witness_stream = await open_witness()
    offset = await witness_stream.next_event(10.0)
    assert offset.event == "offset", offset
    measurement = ResumeMeasurement(events, baseline_kib=rss_kib(edge_pid))
    measurement.peak_kib = measurement.baseline_kib
    loop = asyncio.get_running_loop()
    witness = _Witness(witness_stream, measurement)
    tasks = [loop.create_task(_sample(edge_pid, measurement)), loop.create_task(witness.run())]
    started = time.monotonic()
    resume = await open_resume()
    resume.keep_raw = False
    try:
        # A few events, then the client stops reading: a catch-up must wait for it, not read ahead.
        while measurement.delivered < 100:
            event = await resume.next_event(read_timeout)
            measurement.delivered += event.event == "change"
        await asyncio.sleep(stall_seconds)  # the stall itself is what is measured, not a synchronisation
        witness.sent = time.monotonic()
        await record_for_witness()
        await asyncio.wait_for(witness.arrived.wait(), 30.0)
        while True:
            event = await resume.next_event(read_timeout)
            if event.event == "change":
                measurement.delivered += 1
            elif event.event == "offset":
                break
        measurement.seconds = time.monotonic() - started
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await resume.close()
        await witness_stream.close()
    return measurement
