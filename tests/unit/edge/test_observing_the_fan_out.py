"""What the fan-out path measures: lag to the socket, the oldest undelivered event, the fan-out span (issue 18)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.unit.edge.test_channels import FakeLog, FakeNats, _connection, _hub, _settle
from tests.unit.edge.test_connection import change_ids, frames
from userstream.edge.connection import Connection
from userstream.edge.fanout_trace import DELIVERIES_ATTRIBUTE, SPAN_NAME, FanoutTracer
from userstream.edge.hub import Hub
from userstream.eventlog.subjects import (
    LAST_SEQUENCE_HEADER,
    SEQUENCE_HEADER,
    SUBJECT_HEADER,
    TIMESTAMP_HEADER,
    org_subject,
)
from userstream.tracing import TRACEPARENT_HEADER

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"


def _stamp(seconds: float) -> str:
    """``Nats-Time-Stamp`` as JetStream writes it: RFC 3339, nanoseconds, UTC."""
    whole = datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{int((seconds % 1) * 1e9):09d}Z"


def _deliver(nats: FakeNats, organization: str, sequence: int, previous: int, body: bytes, **extra: str) -> None:
    subject = org_subject(organization)
    headers = {SEQUENCE_HEADER: str(sequence), LAST_SEQUENCE_HEADER: str(previous), SUBJECT_HEADER: subject, **extra}
    message = type("Msg", (), {"headers": headers, "data": body, "subject": "live." + subject})()
    nats.client.subscriptions["live." + subject]._pending_queue.put_nowait(message)


async def _ready(hub: Hub, *connections: Connection) -> None:
    for connection in connections:
        hub.join(connection, "org.a", after=0)
        connection.release()
    await _settle()
    for connection in connections:
        frames(connection)


async def test_the_lag_to_the_socket_is_observed_once_per_event_when_it_is_written() -> None:
    nats, log = FakeNats(), FakeLog()
    hub = _hub(nats, log)
    written: list[float] = []
    hub.observe_lag = written.append
    first, second = _connection(hub, 0), _connection(hub, 0)
    await _ready(hub, first, second)
    stored = time.time() - 2.0
    _deliver(nats, "a", 1, 0, log.store(1, "a"), **{TIMESTAMP_HEADER: _stamp(stored)})
    assert written == []  # written at the end of the loop iteration, with everything else new
    await _settle()
    assert len(written) == 1  # one event, two streams: observed once
    assert 2.0 <= written[0] < 10.0
    await hub.close()


async def test_an_event_written_to_no_stream_has_no_lag_to_the_socket() -> None:
    nats, log = FakeNats(), FakeLog()
    hub = _hub(nats, log)
    written: list[float] = []
    hub.observe_lag = written.append
    reader = _connection(hub, 0)
    reader.memberships.clear()  # joined, but may read nothing of org.a
    await _ready(hub, reader)
    _deliver(nats, "a", 1, 0, log.store(1, "a"), **{TIMESTAMP_HEADER: _stamp(time.time())})
    await _settle()
    assert written == []
    await hub.close()


async def test_the_oldest_undelivered_event_is_known_until_it_is_written() -> None:
    nats, log = FakeNats(), FakeLog()
    hub = _hub(nats, log)
    connection = _connection(hub, 0)
    await _ready(hub, connection)
    stored = time.time() - 5.0
    # The response never started (no transport): the frame waits in the outbox.
    _deliver(nats, "a", 1, 0, log.store(1, "a"), **{TIMESTAMP_HEADER: _stamp(stored)})
    _deliver(nats, "a", 2, 1, log.store(2, "a"), **{TIMESTAMP_HEADER: _stamp(stored + 1)})
    await _settle()
    oldest = connection.oldest_waiting()
    assert oldest is not None
    assert abs(oldest - stored) < 0.001
    connection.outbox.clear()
    assert connection.oldest_waiting() is None

    connection.hold()  # a catch-up in progress: live events wait, held
    _deliver(nats, "a", 3, 2, log.store(3, "a"), **{TIMESTAMP_HEADER: _stamp(stored + 2)})
    oldest = connection.oldest_waiting()
    assert oldest is not None
    assert abs(oldest - (stored + 2)) < 0.001
    connection.release()
    await hub.close()


async def test_one_fan_out_span_per_event_child_of_the_recording_call() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = type("Tracing", (), {"tracer": provider.get_tracer("test")})()
    nats, log = FakeNats(), FakeLog()
    hub = _hub(nats, log)
    tracer = hub.tracer = FanoutTracer(tracing)  # type: ignore[arg-type]  # only the tracer is used
    first, second = _connection(hub, 0), _connection(hub, 0)
    await _ready(hub, first, second)
    sampled = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"
    _deliver(nats, "a", 1, 0, log.store(1, "a"), **{TRACEPARENT_HEADER: sampled})
    _deliver(nats, "a", 2, 1, log.store(2, "a"), **{TRACEPARENT_HEADER: f"00-{TRACE_ID}-{PARENT_SPAN_ID}-00"})
    _deliver(nats, "a", 3, 2, log.store(3, "a"))  # recorded without a trace context
    malformed = f"00-{'z' * 32}-{PARENT_SPAN_ID}-01"  # looks sampled, is not a trace context: delivered, no span
    _deliver(nats, "a", 4, 3, log.store(4, "a"), **{TRACEPARENT_HEADER: malformed})
    assert change_ids(frames(first)) == change_ids(frames(second)) == [1, 2, 3, 4]
    assert exporter.get_finished_spans() == ()  # made together, off the fan-out path
    tracer.flush()
    (span,) = exporter.get_finished_spans()
    assert span.name == SPAN_NAME
    assert span.attributes is not None
    assert span.attributes[DELIVERIES_ATTRIBUTE] == 2
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == PARENT_SPAN_ID
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    await hub.close()
