"""The processes under test: nats-server, activity, acl, and the edges — each its own process, optionally pinned.

Every process runs from this virtualenv's ``userstream`` (or ``python -m
benchmarks.naive_edge``) with only the ``USERSTREAM_*`` variables set here, logs
to a file under the run's directory, and is stopped (SIGTERM, then SIGKILL)
when the run ends. CPU time and RSS are read from ``/proc`` for the process and
its children (uvicorn's workers).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from userstream.embedded_nats import NatsServerProcess

SECRET = "benchmark-secret-that-is-long-enough-for-hs256"
_START_TIMEOUT = 60.0
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
BIN = Path(sys.executable).parent


# Linux's autogroup scheduling shares the CPU fairly between *sessions* first, and
# niceness only orders the processes inside one session. Every benchmark process
# therefore runs in a session of its own (as it would in its own container), and
# `--nice` sets the weight of those sessions (/proc/<pid>/autogroup).
_niceness = [0]


def set_niceness(value: int) -> None:
    """Weight every benchmark process started from now on (and this one's session); negative needs root."""
    _niceness[0] = value
    prioritize(os.getpid())


def prioritize(pid: int) -> None:
    """Give ``pid``'s session (autogroup) the chosen niceness; nothing when none was chosen."""
    if not _niceness[0]:
        return
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(_niceness[0]))
    except OSError:
        os.setpriority(os.PRIO_PROCESS, pid, _niceness[0])


def pinned(command: list[str], cpus: str | None) -> list[str]:
    """``command`` under ``taskset -c cpus`` (no pinning when ``cpus`` is None or taskset is missing)."""
    if not cpus or not Path("/usr/bin/taskset").exists():
        return command
    return ["taskset", "-c", cpus, *command]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def process_tree(pid: int) -> list[int]:
    tree = [pid]
    for child in _children(pid):
        tree += process_tree(child)
    return tree


def cpu_seconds(pids: list[int], *, kernel_only: bool = False) -> float:
    """User + system CPU seconds of ``pids`` (only system time with ``kernel_only``)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[12]) if kernel_only else int(fields[11]) + int(fields[12])) / _TICK
    return total


def machine_busy_seconds() -> float:
    """CPU seconds every CPU of the machine spent busy (not idle, not waiting for I/O) since boot."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _TICK


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE_KB
        except OSError:
            continue
    return total


@dataclass
class Service:
    """One started process (and its children)."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    address: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def pids(self) -> list[int]:
        return process_tree(self.process.pid) if self.process.poll() is None else []

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def kernel_cpu(self) -> float:
        """System time: on loopback it includes the TCP receive work of the peers this process writes to."""
        return cpu_seconds(self.pids(), kernel_only=True)

    def rss_kb(self) -> int:
        return rss_kb(self.pids())

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            for pid in reversed(self.pids()):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
            self.process.wait()

    def fail_if_exited(self) -> None:
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited ({self.process.returncode}); log tail:\n{tail}")


def _env(**values: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("USERSTREAM_")}
    env |= {"USERSTREAM_LOG_FORMAT": "json", "USERSTREAM_JWT_SECRET": SECRET}
    env |= {f"USERSTREAM_{key}": value for key, value in values.items()}
    return env


def _spawn(name: str, command: list[str], root: Path, env: dict[str, str]) -> Service:
    log_path = root / f"{name}.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
            start_new_session=True,  # its own autogroup: see set_niceness
        )
    prioritize(process.pid)
    return Service(name, process, log_path)


def _grpc_port(service: Service, deadline: float) -> int:
    while time.monotonic() < deadline:
        service.fail_if_exited()
        for line in service.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"rpc.listening"' in line:
                return int(json.loads(line)["port"])
        time.sleep(0.05)
    raise TimeoutError(f"{service.name} did not start; see {service.log_path}")


def _wait_http(service: Service, url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        service.fail_if_exited()
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:  # our own loopback URL
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{service.name} not ready at {url}; see {service.log_path}")


@dataclass
class Backbone:
    """NATS, activity and acl: shared by every edge of a run."""

    root: Path
    cpus: str | None
    nats: NatsServerProcess = field(init=False)
    activity: Service = field(init=False)
    acl: Service = field(init=False)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.nats = NatsServerProcess(store_dir=self.root / "nats", log_file=self.root / "nats.log")
        self.nats.start()
        if self.cpus and self.nats.pid:
            subprocess.run(
                ["taskset", "-a", "-p", "-c", self.cpus, str(self.nats.pid)], check=False, capture_output=True
            )
        if self.nats.pid:
            prioritize(self.nats.pid)  # nats-server runs in a session of its own already
        deadline = time.monotonic() + _START_TIMEOUT
        userstream = str(BIN / "userstream")
        self.activity = _spawn(
            "activity",
            pinned([userstream, "activity", "--port", "0"], self.cpus),
            self.root,
            _env(NATS_URL=self.nats.url),
        )
        self.activity.address = f"127.0.0.1:{_grpc_port(self.activity, deadline)}"
        self.acl = _spawn(
            "acl", pinned([userstream, "acl", "--port", "0"], self.cpus), self.root, _env(NATS_URL=self.nats.url)
        )
        self.acl.address = f"127.0.0.1:{_grpc_port(self.acl, deadline)}"

    def pids(self) -> list[int]:
        return [*([self.nats.pid] if self.nats.pid else []), *self.activity.pids(), *self.acl.pids()]

    def stop(self) -> None:
        for service in (getattr(self, "acl", None), getattr(self, "activity", None)):
            if service is not None:
                service.stop()
        if hasattr(self, "nats"):
            self.nats.stop()


EDGE_KINDS = ("userstream", "naive")


def start_edge(
    kind: str,
    backbone: Backbone,
    cpus: str | None,
    workers: int = 1,
    tag: str = "",
    env: dict[str, str] | None = None,
) -> Service:
    """``userstream edge`` or the naive edge on a free port, waiting until it serves streams.

    ``env``: more ``USERSTREAM_*`` settings of the edge (names without the prefix).
    """
    port = free_port()
    env = _env(NATS_URL=backbone.nats.url, ACL_ADDR=backbone.acl.address, **(env or {}))
    if kind == "userstream":
        command = [str(BIN / "userstream"), "edge", "--port", str(port), "--workers", str(workers)]
        probe = f"http://127.0.0.1:{port}/readyz"
    elif kind == "naive":
        command = [sys.executable, "-m", "benchmarks.naive_edge", "--port", str(port), "--workers", str(workers)]
        probe = ""
    else:
        raise ValueError(f"unknown edge {kind!r}; one of {EDGE_KINDS}")
    service = _spawn(f"edge-{kind}{tag}", pinned(command, cpus), backbone.root, env)
    service.address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + _START_TIMEOUT
    if probe:
        _wait_http(service, probe, deadline)
    else:
        _wait_listening(service, port, deadline)
    if workers > 1:
        # uvicorn starts its workers after the socket is bound: wait until each has its app up.
        while len(service.pids()) < workers + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
    return service


def _wait_listening(service: Service, port: int, deadline: float) -> None:
    """The naive edge has no probe: a request without a token answers 401 once its lifespan is up."""
    while time.monotonic() < deadline:
        service.fail_if_exited()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/me/stream", timeout=1.0):  # our loopback URL
                return
        except urllib.error.HTTPError as error:
            if error.code == 401:
                return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{service.name} not listening on {port}; see {service.log_path}")
