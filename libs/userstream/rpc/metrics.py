"""Prometheus metrics of a gRPC service (activity, acl): call latency by method and status code.

Off unless ``USERSTREAM_METRICS_PORT`` is set: then every call's duration is
observed at the boundary (``_boundary``), where it is measured for the log
line anyway, and ``GET /metrics`` is served on that port from a thread of
prometheus-client's own server, away from the service's event loop.
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from userstream.nats_connection import NatsConnection

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _NatsCollector(Collector):
    def __init__(self, connection: NatsConnection) -> None:
        self._connection = connection

    def collect(self) -> list[Metric]:
        return [
            CounterMetricFamily(
                "userstream_rpc_nats_reconnects",
                "Times the service's NATS client reconnected.",
                self._connection.reconnects,
            )
        ]


class RpcMetrics:
    """One service's registry; ``serve`` starts its HTTP endpoint."""

    def __init__(self, connection: NatsConnection | None = None) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "userstream_rpc_server_seconds",
            "Seconds the service took to answer a call, by method and status code.",
            ["method", "code"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        if connection is not None:
            self.registry.register(_NatsCollector(connection))
        self._server: WSGIServer | None = None

    def observe(self, method: str, code: str, seconds: float) -> None:
        self.latency.labels(method, code).observe(seconds)

    def serve(self, host: str, port: int) -> int:
        """Serve ``GET /metrics`` on ``host:port`` (0: a free port) in a thread; returns the bound port."""
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(self._server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
