"""The edge's span for one event's fan-out: a child of the call that recorded the event.

One span per event per worker, never per delivery: the number of streams the
event was written to is an attribute. The edge continues traces and never
starts them: an event recorded without a ``traceparent`` (or by a call whose
trace was not sampled) costs no span, whatever the edge's sampler says.
Built only when tracing is on (``userstream.tracing``); when off the hub holds
None and the fan-out path does no tracing work at all.
"""

from __future__ import annotations

from typing import TypeGuard

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags

from userstream.cursor import CursorCodec
from userstream.tracing import Tracing

SPAN_NAME = "userstream.edge.fan_out"
DELIVERIES_ATTRIBUTE = "userstream.deliveries"
# The last hex digit of a traceparent's flags is odd when the trace is sampled (bit 0).
_SAMPLED_LAST_DIGITS = frozenset("13579bdf")
_TRACEPARENT_LENGTH = 55  # version 00: 2 + 1 + 32 + 1 + 16 + 1 + 2


def is_sampled(traceparent: str | None) -> TypeGuard[str]:
    """Whether the event's writer recorded its trace: a character test, no parse (most events are not)."""
    return (
        traceparent is not None and len(traceparent) == _TRACEPARENT_LENGTH and traceparent[-1] in _SAMPLED_LAST_DIGITS
    )


class FanoutTracer:
    __slots__ = ("_tracer",)

    def __init__(self, tracing: Tracing) -> None:
        self._tracer = tracing.tracer

    def start(self, traceparent: str, subject: str, sequence: int, codec: CursorCodec) -> Span | None:
        """The span of a sampled event's fan-out (see ``is_sampled``); None if ``traceparent`` is malformed."""
        try:
            trace_id, span_id = int(traceparent[3:35], 16), int(traceparent[36:52], 16)
        except ValueError:
            return None
        if not trace_id or not span_id:
            return None
        # Built directly rather than by the W3C propagator, whose regular expression costs more than the span.
        remote = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
        return self._tracer.start_span(
            SPAN_NAME,
            context=trace.set_span_in_context(NonRecordingSpan(remote)),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.destination.name": subject,
                "userstream.cursor": codec.encode(sequence),
            },
        )

    @staticmethod
    def end(span: Span, deliveries: int) -> None:
        span.set_attribute(DELIVERIES_ATTRIBUTE, deliveries)
        span.end()
