"""Prometheus metrics of one relay process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RelayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rows_recorded = Counter(
            "userstream_relay_rows_recorded", "Outbox rows recorded in the log.", registry=self.registry
        )
        self.rows_rejected = Counter(
            "userstream_relay_rows_rejected", "Outbox rows moved to outbox_rejected.", registry=self.registry
        )
        self.lag_seconds = Gauge(
            "userstream_relay_lag_seconds",
            "Age of the oldest committed row not yet recorded (0 when the outbox is empty).",
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "userstream_relay_batch_rows",
            "Rows per batch read from the outbox.",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000),
            registry=self.registry,
        )
        self.active = Gauge(
            "userstream_relay_active",
            "1 on the relay holding the lock (recording), 0 on a standby.",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
