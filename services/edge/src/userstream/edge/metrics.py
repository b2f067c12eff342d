"""Prometheus metrics of one edge worker, read from plain counters at scrape time.

The fan-out path increments ints on ``HubStats``; turning them into metric
families only when Prometheus asks keeps metric objects off the hot path.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from userstream.edge.runtime import EdgeRuntime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class EdgeCollector(Collector):
    def __init__(self, runtime: EdgeRuntime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        runtime = self._runtime
        stats = runtime.hub.stats
        connections = runtime.registry.connections
        yield GaugeMetricFamily("userstream_edge_open_streams", "Streams open on this worker.", len(connections))
        yield GaugeMetricFamily(
            "userstream_edge_queued_bytes",
            "Bytes queued for clients and not yet written.",
            sum(connection.outbox.buffered for connection in connections),
        )
        yield GaugeMetricFamily(
            "userstream_edge_channels", "Channels (subjects) followed live.", len(runtime.hub.channels)
        )
        yield CounterMetricFamily(
            "userstream_edge_events", "Events received from the log, counted once per worker.", stats.events
        )
        yield CounterMetricFamily("userstream_edge_deliveries", "Events written to streams.", stats.deliveries)
        drops = CounterMetricFamily("userstream_edge_drops", "Streams cut off, by reason.", labels=["reason"])
        drops.add_metric(["slow-consumer"], stats.slow_consumers)
        drops.add_metric(["resync"], stats.resyncs)
        yield drops
        yield CounterMetricFamily(
            "userstream_edge_gap_repairs", "Gaps in the live flow repaired from the log.", stats.gap_repairs
        )
        yield CounterMetricFamily(
            "userstream_edge_catchup_reads", "Ranges read back from the log.", stats.catchup_reads
        )
        yield GaugeMetricFamily(
            "userstream_edge_ready", "1 when NATS and acl are reachable and not draining.", runtime.ready
        )
        yield from _auth_metrics(runtime)


def _auth_metrics(runtime: EdgeRuntime) -> Iterator[Metric]:
    jwks, hook = runtime.auth.jwks, runtime.auth.hook
    if jwks is not None:
        age = jwks.age()
        yield GaugeMetricFamily(
            "userstream_edge_jwks_age_seconds",
            "Seconds since the key set (USERSTREAM_JWKS_URL) was last fetched; -1 while never.",
            -1.0 if age is None else age,
        )
        yield CounterMetricFamily(
            "userstream_edge_jwks_fetch_failures", "Fetches of the key set that failed.", jwks.failures
        )
    if hook is not None:
        calls = CounterMetricFamily(
            "userstream_edge_auth_hook_requests",
            "Session-hook authentications, by how they were answered.",
            labels=["answered_by"],
        )
        calls.add_metric(["call"], hook.calls)
        calls.add_metric(["shared-call"], hook.shared)
        calls.add_metric(["reused-answer"], hook.reused)
        yield calls


class EdgeMetrics:
    """The worker's registry: the collector above plus the end-to-end lag histogram."""

    def __init__(self, runtime: EdgeRuntime) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(EdgeCollector(runtime))
        self.lag = Histogram(
            "userstream_edge_lag_seconds",
            "Seconds from an event being stored in the log to this worker receiving it live.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
