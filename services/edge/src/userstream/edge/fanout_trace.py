"""The edge's span for one event's fan-out: a child of the call that recorded the event.

One span per event per worker, never per delivery: the number of streams the
event was written to is an attribute. The edge continues traces and never
starts them: an event recorded without a ``traceparent`` (or by a call whose
trace was not sampled) costs no span, whatever the edge's sampler says.
Built only when tracing is on (``userstream.tracing``); when off the hub holds
None and the fan-out path does no tracing work at all.
"""

from __future__ import annotations

import asyncio
import time
from typing import TypeGuard

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from userstream.tracing import Tracing

SPAN_NAME = "userstream.edge.fan_out"
DELIVERIES_ATTRIBUTE = "userstream.deliveries"
# The last hex digit of a traceparent's flags is odd when the trace is sampled (bit 0).
_SAMPLED_LAST_DIGITS = frozenset("13579bdf")
_TRACEPARENT_LENGTH = 55  # version 00: 2 + 1 + 32 + 1 + 16 + 1 + 2
# Seconds between two batches of fan-out spans (their times are the fan-outs' own, whenever they are made).
FLUSH_INTERVAL = 1.0


def is_sampled(traceparent: str | None) -> TypeGuard[str]:
    """Whether the event's writer recorded its trace: a character test, no parse (most events are not)."""
    return (
        traceparent is not None and len(traceparent) == _TRACEPARENT_LENGTH and traceparent[-1] in _SAMPLED_LAST_DIGITS
    )


# A sampled event's fan-out, until its span is made: traceparent, subject, cursor, start and end (ns), deliveries.
Pending = tuple[str, str, str, int, int, int]


class FanoutTracer:
    """Records sampled fan-outs as they happen, and makes their spans (with those times) once a second.

    Making a span is the SDK's work — tens of µs — and costs several times more
    when done once in a while between fan-outs than many in a row (measured:
    ``python -m benchmarks tracing --micro``), so the fan-out path only notes
    what the span needs and ``flush`` makes the spans together.
    """

    __slots__ = ("_pending", "_tracer")

    def __init__(self, tracing: Tracing) -> None:
        self._tracer = tracing.tracer
        self._pending: list[Pending] = []

    def record(self, traceparent: str, subject: str, cursor: str, started_ns: int, deliveries: int) -> None:
        """A sampled event (``is_sampled``) was fanned out from ``started_ns`` until now, to ``deliveries`` streams."""
        self._pending.append((traceparent, subject, cursor, started_ns, time.time_ns(), deliveries))

    def flush(self) -> None:
        """Make the spans of every fan-out recorded since the last flush (the SDK then exports them in batches)."""
        pending, self._pending = self._pending, []
        for traceparent, subject, cursor, started_ns, ended_ns, deliveries in pending:
            try:
                trace_id, span_id = int(traceparent[3:35], 16), int(traceparent[36:52], 16)
            except ValueError:
                continue  # not a trace context after all: no span
            if not trace_id or not span_id:
                continue
            # Built directly rather than by the W3C propagator, whose regular expression costs more than the span.
            remote = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
            span = self._tracer.start_span(
                SPAN_NAME,
                context=trace.set_span_in_context(NonRecordingSpan(remote)),
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "nats",
                    "messaging.destination.name": subject,
                    "userstream.cursor": cursor,
                    DELIVERIES_ATTRIBUTE: deliveries,
                },
                start_time=started_ns,
            )
            span.end(end_time=ended_ns)

    async def run(self, interval: float = FLUSH_INTERVAL) -> None:
        """Flush every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.flush()
