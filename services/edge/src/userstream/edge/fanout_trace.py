"""The edge's span for one event's fan-out: a child of the call that recorded the event.

One span per event per worker, never per delivery: the number of streams the
event was written to is an attribute. The edge continues traces and never
starts them: an event recorded without a ``traceparent`` (or by a call whose
trace was not sampled) costs no span, whatever the edge's sampler says.
Built only when tracing is on (``userstream.tracing``); when off the hub holds
None and the fan-out path does no tracing work at all.
"""

from __future__ import annotations

from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from userstream.cursor import CursorCodec
from userstream.tracing import TRACEPARENT_HEADER, Tracing, is_sampled

SPAN_NAME = "userstream.edge.fan_out"
DELIVERIES_ATTRIBUTE = "userstream.deliveries"


class FanoutTracer:
    __slots__ = ("_propagator", "_tracer")

    def __init__(self, tracing: Tracing) -> None:
        self._tracer = tracing.tracer
        self._propagator = TraceContextTextMapPropagator()

    def start(self, traceparent: str | None, subject: str, sequence: int, codec: CursorCodec) -> Span | None:
        """The span of one event's fan-out, or None (at the cost of a header lookup) when its trace is not sampled."""
        if traceparent is None or not is_sampled(traceparent):
            return None
        parent = self._propagator.extract({TRACEPARENT_HEADER: traceparent})
        return self._tracer.start_span(
            SPAN_NAME,
            context=parent,
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
