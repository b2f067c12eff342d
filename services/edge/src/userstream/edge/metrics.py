"""Prometheus metrics of the edge, read from plain counters and live state, never kept on the hot path.

The fan-out path increments ints on ``HubStats``; they become metric families
only when Prometheus asks (one worker), or at each sync (several workers).

**Several workers** (``userstream edge --workers N``) share one port, so a
scrape reaches one of them at random. They then run in prometheus-client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by ``userstream edge``):
each worker copies its counters and its live gauges into its own
memory-mapped file every ``metrics_sync_interval`` seconds and right before it
answers a scrape, and the answer merges every worker's file — counters and
histograms summed, gauges of live state summed (open streams, queued bytes,
channels), the oldest undelivered event the maximum, readiness the minimum.
Gauges of a worker that died are removed at the next sync of any other
(``mark_process_dead``), so they never count streams nobody holds any more;
its counters stay, as totals must never go down.
"""

from __future__ import annotations

import asyncio
import glob
import os
import re
import time
from collections.abc import Iterator
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from userstream.edge.runtime import EdgeRuntime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The variable prometheus-client itself reads to choose multiprocess mode (at import).
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

GaugeMode = Literal["livesum", "livemax", "livemin"]
# name → (help, label names)
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "userstream_edge_events": ("Events received from the log, counted once per worker.", ()),
    "userstream_edge_deliveries": ("Events written to streams.", ()),
    "userstream_edge_drops": ("Streams cut off, by reason.", ("reason",)),
    "userstream_edge_gap_repairs": ("Gaps in the live flow repaired from the log.", ()),
    "userstream_edge_catchup_reads": ("Reads of the log for catch-ups (one per page) and gap repairs.", ()),
    "userstream_edge_must_refetch": (
        "Stream requests told to refetch (cursor outside the log), by reason.",
        ("reason",),
    ),
    "userstream_edge_auth_failures": ("Stream requests refused 401, by reason.", ("reason",)),
    "userstream_edge_nats_reconnects": ("Times the worker's NATS client reconnected.", ()),
    # Only with USERSTREAM_JWKS_URL / USERSTREAM_AUTH_HOOK_URL set.
    "userstream_edge_jwks_fetch_failures": ("Fetches of the key set that failed.", ()),
    "userstream_edge_auth_hook_requests": (
        "Session-hook authentications, by how they were answered.",
        ("answered_by",),
    ),
}
# name → (help, how the values of several workers combine)
GAUGES: dict[str, tuple[str, GaugeMode]] = {
    "userstream_edge_open_streams": ("Streams open.", "livesum"),
    "userstream_edge_queued_bytes": ("Bytes queued for clients and not yet written.", "livesum"),
    "userstream_edge_channels": ("Channels (subjects) followed live.", "livesum"),
    "userstream_edge_oldest_undelivered_seconds": (
        "Age of the oldest live event waiting to be written to a client's socket (0: none waits).",
        "livemax",
    ),
    "userstream_edge_ready": ("1 when NATS and acl are reachable and not draining.", "livemin"),
    # Only with USERSTREAM_JWKS_URL set; several workers: the stalest.
    "userstream_edge_jwks_age_seconds": (
        "Seconds since the key set (USERSTREAM_JWKS_URL) was last fetched; -1 while never.",
        "livemax",
    ),
}
Values = dict[str, dict[tuple[str, ...], float]]


def read_values(runtime: EdgeRuntime, now: float) -> Values:
    """Every counter and gauge of this worker, from its plain counters and live state."""
    stats = runtime.hub.stats
    connections = runtime.registry.connections
    oldest = [stamp for connection in connections if (stamp := connection.oldest_waiting()) is not None]
    return {
        "userstream_edge_events": {(): stats.events},
        "userstream_edge_deliveries": {(): stats.deliveries},
        "userstream_edge_drops": {("slow-consumer",): stats.slow_consumers, ("resync",): stats.resyncs},
        "userstream_edge_gap_repairs": {(): stats.gap_repairs},
        "userstream_edge_catchup_reads": {(): stats.catchup_reads},
        "userstream_edge_must_refetch": {(reason,): count for reason, count in stats.must_refetch.items()},
        "userstream_edge_auth_failures": {(reason,): count for reason, count in stats.auth_failures.items()},
        "userstream_edge_nats_reconnects": {(): runtime.nats.reconnects},
        "userstream_edge_open_streams": {(): len(connections)},
        "userstream_edge_queued_bytes": {(): sum(connection.outbox.buffered for connection in connections)},
        "userstream_edge_channels": {(): len(runtime.hub.channels)},
        "userstream_edge_oldest_undelivered_seconds": {(): max(0.0, now - min(oldest)) if oldest else 0.0},
        "userstream_edge_ready": {(): float(runtime.ready)},
        **_auth_values(runtime),
    }


def _auth_values(runtime: EdgeRuntime) -> Values:
    """The key set's and the session hook's figures, when they are configured."""
    values: Values = {}
    jwks, hook = runtime.auth.jwks, runtime.auth.hook
    if jwks is not None:
        age = jwks.age()
        values["userstream_edge_jwks_age_seconds"] = {(): -1.0 if age is None else age}
        values["userstream_edge_jwks_fetch_failures"] = {(): jwks.failures}
    if hook is not None:
        values["userstream_edge_auth_hook_requests"] = {
            ("call",): hook.calls,
            ("shared-call",): hook.shared,
            ("reused-answer",): hook.reused,
        }
    return values


class EdgeCollector(Collector):
    """One worker: every value read at scrape time, exact."""

    def __init__(self, runtime: EdgeRuntime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        values = read_values(self._runtime, time.time())
        for name, (documentation, labels) in COUNTERS.items():
            if name in values:
                counter = CounterMetricFamily(name, documentation, labels=list(labels))
                for label_values, value in values[name].items():
                    counter.add_metric(list(label_values), value)
                yield counter
        for name, (documentation, _) in GAUGES.items():
            if name in values:
                yield GaugeMetricFamily(name, documentation, values[name][()])


class EdgeMetrics:
    """The worker's metrics: the values above plus the lag and latency histograms.

    ``multiprocess_dir`` (several workers): values are synced into that directory and a
    scrape answers for every worker; None: this worker alone, read at scrape time.
    """

    def __init__(self, runtime: EdgeRuntime, multiprocess_dir: str | None = None, sync_interval: float = 1.0) -> None:
        self._runtime = runtime
        self._dir = multiprocess_dir
        self._sync_interval = sync_interval
        self.registry = CollectorRegistry()
        self.lag = Histogram(
            "userstream_edge_lag_seconds",
            "Seconds from an event being stored in the log to this worker writing it to client sockets "
            "(once per event written as it arrived; events held for a slow or catching-up stream show in "
            "userstream_edge_oldest_undelivered_seconds).",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.acl_latency = Histogram(
            "userstream_edge_acl_seconds",
            "Seconds acl took to answer the connect-time GetSubject, as this worker saw it.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        if multiprocess_dir is None:
            self.registry.register(EdgeCollector(runtime))
            self._counters: dict[str, Counter] = {}
            self._gauges: dict[str, Gauge] = {}
        else:
            self._counters = {
                name: Counter(name, documentation, labels, registry=None)
                for name, (documentation, labels) in COUNTERS.items()
            }
            self._gauges = {
                name: Gauge(name, documentation, registry=None, multiprocess_mode=mode)
                for name, (documentation, mode) in GAUGES.items()
            }
        self._synced: Values = {}

    @property
    def multiprocess(self) -> bool:
        return self._dir is not None

    def render(self) -> bytes:
        if self._dir is None:
            return generate_latest(self.registry)
        self.sync()
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=self._dir)  # type: ignore[no-untyped-call]  # untyped upstream
        return generate_latest(merged)

    def sync(self) -> None:
        """Copy this worker's values into its multiprocess files; forget the gauges of dead workers."""
        values = read_values(self._runtime, time.time())
        for name, counter in self._counters.items():
            synced = self._synced.get(name, {})
            for label_values, value in values.get(name, {}).items():
                delta = value - synced.get(label_values, 0)
                if delta > 0:
                    (counter.labels(*label_values) if label_values else counter).inc(delta)
        for name, gauge in self._gauges.items():
            if name in values:
                gauge.set(values[name][()])
        self._synced = values
        assert self._dir is not None
        _forget_dead_workers(self._dir)

    async def run(self) -> None:
        """Sync every ``sync_interval`` seconds (several workers only) until cancelled."""
        if self._dir is None:
            return
        while True:
            self.sync()
            await asyncio.sleep(self._sync_interval)


_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db$")


def _forget_dead_workers(directory: str) -> None:
    dead: set[int] = set()
    for path in glob.glob(os.path.join(directory, "gauge_live*.db")):
        match = _LIVE_GAUGE_FILE.search(path)
        if match is not None and not _alive(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in dead:
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]  # untyped upstream


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
