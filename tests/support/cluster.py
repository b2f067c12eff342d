"""A 3-node NATS JetStream cluster on loopback, for failover tests."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from userstream.embedded_nats import NatsServerProcess


def free_port() -> int:
    """A port free right now (routes must know cluster ports before the servers start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class NatsCluster:
    root: Path
    size: int = 3
    nodes: list[NatsServerProcess] = field(default_factory=list)

    def start(self) -> None:
        cluster_ports = [free_port() for _ in range(self.size)]
        routes = [f"nats://127.0.0.1:{port}" for port in cluster_ports]
        self.nodes = [
            NatsServerProcess(
                store_dir=self.root / f"n{index}",
                name=f"n{index}",
                cluster_name="userstream-test",
                cluster_port=port,
                routes=[route for route in routes if not route.endswith(f":{port}")],
                log_file=self.root / f"n{index}.log",
            )
            for index, port in enumerate(cluster_ports)
        ]
        for node in self.nodes:
            node.start_async()
        for node in self.nodes:
            node.wait_started()

    @property
    def urls(self) -> str:
        """All members, comma separated, as USERSTREAM_NATS_URL takes them."""
        return ",".join(node.url for node in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
