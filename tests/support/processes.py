"""The services as operators run them: ``userstream activity|acl|edge`` subprocesses, for kill -9 and restarts.

Each process listens on a port chosen once (free at the time) and kept across
restarts, so the other services and the clients find it again at the same
address. Output goes to a log file per process in the test's directory.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.cluster import free_port
from tests.support.sse import HTTPResponse, request
from userstream.rpc.channel import is_serving, open_channel

USERSTREAM = str(Path(sys.executable).parent / "userstream")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
_POLL = 0.05
_BIND_ATTEMPTS = 3


class PortTakenError(RuntimeError):
    """The process could not listen: another process took its port."""


def clean_environment(**values: str) -> dict[str, str]:
    """This process's environment without any host ``USERSTREAM_*``, plus ``values`` (names without the prefix)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("USERSTREAM_")}
    return {**env, **{f"USERSTREAM_{key}": value for key, value in values.items()}}


@dataclass
class ServiceProcess:
    """One ``userstream <command>`` process; ``start`` again after ``kill`` to restart it on the same port."""

    command: str  # "activity", "acl", "edge" or "relay"
    env: dict[str, str]
    log_file: Path
    port: int = field(default_factory=free_port)
    starts: int = 0
    served: bool = False  # ready at least once: others know the port now
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.command} is already running")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as output:
            output.write(f"--- start {self.starts + 1} ---\n".encode())
            output.flush()
            self._process = subprocess.Popen(
                [USERSTREAM, self.command, "--port", str(self.port)],
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1

    async def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until gRPC health says SERVING (activity, acl) or ``/readyz`` answers 200 (edge).

        If the port was taken meanwhile (free when chosen, but the machine is shared), the process
        is started again: on another port the first time (nobody knows this one yet), else on the
        same port once it is free again.
        """
        for _ in range(_BIND_ATTEMPTS - 1):
            try:
                await self._wait_ready(timeout)
            except PortTakenError:
                if self.served:
                    await asyncio.sleep(_POLL * 10)
                else:
                    self.port = free_port()
                self.start()
            else:
                self.served = True
                return
        await self._wait_ready(timeout)
        self.served = True

    async def _wait_ready(self, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        channel = None if self.command in ("edge", "relay") else open_channel(self.address)
        try:
            while not await self._ready(channel):
                if not self.running:
                    if "already in use" in self._last_start_log().lower():
                        raise PortTakenError(f"{self.command}: port {self.port} taken by another process")
                    raise RuntimeError(f"{self.command} exited with {self.returncode}; see {self.log_file}")
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"{self.command} not ready within {timeout} s; see {self.log_file}")
                await asyncio.sleep(_POLL)
        finally:
            if channel is not None:
                await channel.close()

    async def _ready(self, channel: object) -> bool:
        if channel is not None:
            return await is_serving(channel, timeout=0.5)  # type: ignore[arg-type]  # a grpc.aio.Channel
        try:
            response = await request(self.base_url, "/readyz", timeout=1.0)
        except (OSError, TimeoutError, ValueError, IndexError):
            return False
        return isinstance(response, HTTPResponse) and response.status == 200

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is flushed, drained or said goodbye to."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM and wait; SIGKILL if it lingers. Returns the exit status."""
        self.signal_stop()
        return self.wait_stopped(timeout)

    def signal_stop(self) -> None:
        """Send SIGTERM (a graceful stop) without waiting."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the process to exit; SIGKILL it after ``timeout``. Returns the exit status."""
        process = self._process
        if process is None:
            return 0
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return process.returncode

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def _last_start_log(self) -> str:
        return self.log_text().rpartition(f"--- start {self.starts} ---")[2]


async def start_all(processes: list[ServiceProcess], timeout: float = START_TIMEOUT) -> None:
    """Start every process at once and wait until all are ready (imports dominate: overlap them)."""
    for process in processes:
        if not process.running:
            process.start()
    await asyncio.gather(*(process.wait_ready(timeout) for process in processes))
