"""One edge worker's fan-out path in this process, fed NATS messages directly; prints its CPU per delivery as JSON.

Run by ``benchmarks.tracing --micro`` in a fresh process per measurement, with
``PYTHONPATH`` naming an older tree for *today*: it uses only what that tree
has too (``Hub``, ``Connection``, ``Outbox.attach``, ``Channel.on_live``).
Streams write to a transport that accepts everything, so the direct-write path
runs; nothing else (no sockets, no NATS) is measured.

    python -m benchmarks._fanout_driver EVENTS STREAMS SAMPLED_RATIO [OTLP_ENDPOINT]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

from userstream import gc_tuning
from userstream.cursor import CursorCodec
from userstream.edge.connection import Connection
from userstream.edge.hub import Hub
from userstream.eventlog.subjects import org_subject
from userstream.events import ActivityInput, Limits, encode_body, validate_activity
from userstream.policy import default_policy

CODEC = CursorCodec(1_700_000_000)
EVENTS_PER_ITERATION = 20  # events handled between two turns of the loop (the writer coalesces them)
WARM_UP_EVENTS = 2000
ORGANIZATION = "acme"


class _Sink:
    """A transport whose socket is always free."""

    def write(self, data: bytes) -> None:
        return None

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


class _Subscription:
    def __init__(self, subject: str) -> None:
        self.subject = subject
        self._pending_queue: Any = None

    async def unsubscribe(self) -> None:
        return None


class _Client:
    def __init__(self) -> None:
        self.subscriptions: dict[str, _Subscription] = {}

    async def subscribe(self, subject: str, **_: object) -> _Subscription:
        self.subscriptions[subject] = _Subscription(subject)
        return self.subscriptions[subject]

    async def flush(self) -> None:
        return None


class _Nats:
    def __init__(self) -> None:
        self.client = _Client()

    def on_state_change(self, listener: object) -> None:
        return None


class _Reader:
    async def last_sequence(self, subject: str) -> int:
        return 0

    async def read(self, subject: str, after: int, until: int) -> list[Any]:
        return []


class _Message:
    __slots__ = ("data", "headers", "subject")

    def __init__(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        self.subject = subject
        self.data = data
        self.headers = headers


def _messages(count: int, sampled_ratio: float | None) -> list[_Message]:
    activity = validate_activity(
        ActivityInput(
            type="page.updated",
            organization_id=ORGANIZATION,
            entity_id="p1",
            data_json='{"title": "' + "x" * 200 + '"}',
            changed_keys=["title"],
        ),
        default_policy(),
        Limits(),
    )
    body = encode_body(activity)
    subject = org_subject(ORGANIZATION)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"
    every = round(1 / sampled_ratio) if sampled_ratio else 0
    messages = []
    for sequence in range(1, count + 1):
        headers = {
            "Nats-Stream": "ACTIVITY",
            "Nats-Subject": subject,
            "Nats-Sequence": str(sequence),
            "Nats-Last-Sequence": str(sequence - 1),
            "Nats-Time-Stamp": stamp,
        }
        if sampled_ratio is not None:
            flags = "01" if every and sequence % every == 0 else "00"
            headers["traceparent"] = f"00-{sequence:032x}-{sequence:016x}-{flags}"
        messages.append(_Message("live." + subject, body, headers))
    return messages


async def _run(events: int, streams: int, sampled_ratio: float | None, endpoint: str | None) -> dict[str, Any]:
    hub = Hub(
        connection=_Nats(),  # type: ignore[arg-type]  # stand-ins: nothing but the fan-out runs
        reader=_Reader(),  # type: ignore[arg-type]
        codec=lambda: CODEC,
        ring_size=512,
        on_forget=lambda _: None,
        unavailable_after=1.0,
    )
    registry = CollectorRegistry()
    hub.observe_lag = Histogram("lag", "", registry=registry).observe  # as the app sets it
    tracing = None
    if endpoint is not None:
        from userstream.edge.fanout_trace import FanoutTracer  # only trees with tracing
        from userstream.tracing import Tracing, TracingSettings

        tracing = Tracing("benchmark-edge", TracingSettings(endpoint=endpoint))
        hub.tracer = FanoutTracer(tracing)
    subject = org_subject(ORGANIZATION)
    for _ in range(streams):
        connection = Connection(
            hub=hub,
            policy=default_policy(),
            user_id="alice",
            system_role="user",
            memberships={ORGANIZATION: "member"},
            position=0,
            offset_target=0,
            offset_cursor=CODEC.encode(0),
            resumed=False,
            max_bytes=1_048_576,
        )
        hub.join(connection, subject, after=0)
        connection.release()
        connection.outbox.attach(lambda message: asyncio.sleep(0), _Sink())  # type: ignore[arg-type,misc]
    for _ in range(50):
        await asyncio.sleep(0)
    queue = hub.nats.client.subscriptions["live." + subject]._pending_queue
    messages = _messages(WARM_UP_EVENTS + events, sampled_ratio)
    gc_tuning.tune_after_start()  # as `userstream edge` does once started

    async def feed(batch: list[_Message]) -> None:
        for index, message in enumerate(batch, 1):
            queue.put_nowait(message)
            if index % EVENTS_PER_ITERATION == 0:
                await asyncio.sleep(0)
        await asyncio.sleep(0)

    # Warm up first: a long-running edge has paid its one-time costs (lazy imports, the first export) long ago.
    await feed(messages[:WARM_UP_EVENTS])
    if tracing is not None:
        hub.tracer.flush()  # the edge makes its spans once a second
        tracing.provider.force_flush()
    warm_deliveries = hub.stats.deliveries
    started_cpu, started_wall = time.process_time(), time.perf_counter()
    await feed(messages[WARM_UP_EVENTS:])
    if tracing is not None:
        hub.tracer.flush()  # making the spans counts (the measurement is shorter than the edge's 1 s interval)
    before_export = time.process_time() - started_cpu
    if tracing is not None:
        tracing.shutdown()  # the export of every span counts
    cpu = time.process_time() - started_cpu
    deliveries = hub.stats.deliveries - warm_deliveries
    return {
        "deliveries": deliveries,
        "cpu_seconds": cpu,
        "cpu_seconds_before_export": before_export,
        "wall_seconds": time.perf_counter() - started_wall,
        "deliveries_per_cpu_second": deliveries / cpu if cpu else 0.0,
    }


def main() -> None:
    events, streams, ratio = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    endpoint = sys.argv[4] if len(sys.argv) > 4 else None
    sampled_ratio = None if ratio == "none" else float(ratio)
    import uvloop  # as the edge runs

    print(json.dumps(uvloop.run(_run(events, streams, sampled_ratio, endpoint))))


if __name__ == "__main__":
    main()
