"""OpenTelemetry tracing, opt-in through the standard ``OTEL_*`` variables; nothing at all when off.

Tracing is on when an OTLP endpoint is configured (``OTEL_EXPORTER_OTLP_ENDPOINT``
or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) and not switched off
(``OTEL_SDK_DISABLED=true``, ``OTEL_TRACES_EXPORTER=none``). The service name
(``OTEL_SERVICE_NAME``) and the sampler (``OTEL_TRACES_SAMPLER``,
``OTEL_TRACES_SAMPLER_ARG``) are read here with the rest of the settings; the
exporter's headers, timeouts and batching are read by the SDK itself. When
off, no provider, exporter, interceptor or per-call work exists: callers hold
``None`` instead of a ``Tracing``.

Each service builds its own provider (not the global one), so several services
in one process — the tests, ``userstream dev`` — never share one.

The W3C ``traceparent`` of the call that recorded an event travels with it in
the NATS header of the same name (``Recorder``), through the stream's
republish, to the edge, which makes it the parent of its fan-out span.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import trace

from userstream.settings import Env, SettingsError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import Sampler
    from opentelemetry.trace import Tracer

# The W3C Trace Context header, in gRPC metadata and in NATS message headers alike.
TRACEPARENT_HEADER = "traceparent"
DEFAULT_SAMPLER = "parentbased_always_on"  # the OpenTelemetry specification's default
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


@dataclass(frozen=True)
class TracingSettings:
    """Whether and where to send spans, and which to keep; from the standard ``OTEL_*`` variables."""

    # The OTLP/HTTP traces URL; None: tracing is off.
    endpoint: str | None = None
    service_name: str | None = None
    sampler: str = DEFAULT_SAMPLER
    # The ratio for the *traceidratio samplers (1.0: every trace).
    ratio: float = 1.0

    @property
    def enabled(self) -> bool:
        return self.endpoint is not None

    @classmethod
    def from_env(cls, env: Env) -> TracingSettings:
        if env.standard("OTEL_SDK_DISABLED").lower() == "true":
            return cls()
        if (env.standard("OTEL_TRACES_EXPORTER") or "otlp").lower() != "otlp":
            return cls()  # `none`, or an exporter this build does not ship: off rather than misrouted
        endpoint = env.standard("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or None
        if endpoint is None and (base := env.standard("OTEL_EXPORTER_OTLP_ENDPOINT")):
            endpoint = base.rstrip("/") + "/v1/traces"  # the signal's path, as the specification says
        sampler = (env.standard("OTEL_TRACES_SAMPLER") or DEFAULT_SAMPLER).lower()
        if sampler not in SAMPLERS:
            raise SettingsError(f"OTEL_TRACES_SAMPLER={sampler!r} must be one of {', '.join(SAMPLERS)}")
        ratio = 1.0
        if raw := env.standard("OTEL_TRACES_SAMPLER_ARG"):
            try:
                ratio = float(raw)
            except ValueError:
                raise SettingsError(f"OTEL_TRACES_SAMPLER_ARG={raw!r} is not a number") from None
            if not 0.0 <= ratio <= 1.0:
                raise SettingsError(f"OTEL_TRACES_SAMPLER_ARG={raw} must be between 0 and 1")
        return cls(
            endpoint=endpoint,
            service_name=env.standard("OTEL_SERVICE_NAME") or None,
            sampler=sampler,
            ratio=ratio,
        )


class Tracing:
    """One service's tracer provider, exporting over OTLP/HTTP in batches, off the event loop.

    The SDK and the exporter are imported here, not with this module: a service with tracing off
    never loads them (~0.1 s and some MiB per process).
    """

    def __init__(self, default_service_name: str, settings: TracingSettings) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

        assert settings.endpoint is not None
        resource = Resource.create({SERVICE_NAME: settings.service_name or default_service_name})
        self.provider: TracerProvider = TracerProvider(
            resource=resource, sampler=_sampler(settings.sampler, settings.ratio)
        )
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.endpoint)))
        self.tracer: Tracer = self.provider.get_tracer("userstream")

    def shutdown(self) -> None:
        """Export what is buffered and stop (bounded by the exporter's own timeout)."""
        self.provider.shutdown()


def _sampler(name: str, ratio: float) -> Sampler:
    from opentelemetry.sdk.trace import sampling  # noqa: PLC0415  # see Tracing

    samplers = {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": sampling.TraceIdRatioBased(ratio),
        "parentbased_always_on": sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": sampling.ParentBasedTraceIdRatio(ratio),
    }
    return samplers[name]


def start_tracing(default_service_name: str, settings: TracingSettings) -> Tracing | None:
    """The service's tracing when enabled, else None (and nothing is set up)."""
    return Tracing(default_service_name, settings) if settings.enabled else None


def current_traceparent() -> str | None:
    """The ``traceparent`` of the span current in this context (a gRPC call's server span), if any."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
