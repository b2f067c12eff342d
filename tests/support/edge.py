"""The edge in this process: uvicorn serving the real app on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from tests.support.cluster import free_port
from tests.support.sse import HTTPResponse, request
from userstream.edge.app import TransportExposingApp, create_app
from userstream.edge.http_protocol import GuardedHttpToolsProtocol
from userstream.edge.runtime import EdgeRuntime
from userstream.edge.settings import EdgeSettings
from userstream.settings import Env


@dataclass
class RunningEdge:
    server: uvicorn.Server
    task: asyncio.Task[None]
    app: TransportExposingApp
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def runtime(self) -> EdgeRuntime:
        """The runtime the app's lifespan built."""
        runtime: EdgeRuntime = self.app.app.state.runtime
        return runtime

    async def stop(self) -> None:
        """Drain (as SIGTERM would), then stop uvicorn."""
        await self.runtime.drain()
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 15)


def edge_settings(nats_url: str, acl_addr: str, secret: str, **env: str) -> EdgeSettings:
    values = {
        "USERSTREAM_NATS_URL": nats_url,
        "USERSTREAM_ACL_ADDR": acl_addr,
        "USERSTREAM_JWT_SECRET": secret,
        **{f"USERSTREAM_{key}": value for key, value in env.items()},
    }
    return EdgeSettings.load(port=0, env=Env(values))


async def start_edge(settings: EdgeSettings, *, wait_ready: bool = True) -> RunningEdge:
    app = create_app(settings, owns_process=False)
    GuardedHttpToolsProtocol.configure(settings)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        loop="none",
        http=GuardedHttpToolsProtocol,  # as `userstream edge` serves (server.py)
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    edge = RunningEdge(server, task, app, port)
    if wait_ready:
        await wait_until(lambda: edge.runtime.ready, 15)
    return edge


async def wait_until(predicate, timeout: float, interval: float = 0.02) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(interval)


@dataclass
class EdgeProcess:
    """``userstream edge`` as operators run it: its own process, signals, exit status and memory."""

    process: asyncio.subprocess.Process
    port: int
    log_file: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def memory_kib(self, field: str = "VmRSS") -> int:
        """``VmRSS`` (now) or ``VmHWM`` (peak) of the process, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def log_tail(self, size: int = 2000) -> str:
        return self.log_file.read_text(errors="replace")[-size:]

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    async def wait(self, timeout: float) -> int:
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def stop(self) -> None:
        if self.process.returncode is None:
            # The whole session (started with start_new_session): with --workers the workers too,
            # which would otherwise outlive a killed parent.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()


async def start_edge_process(
    log_file: Path,
    timeout: float = 30.0,
    *,
    workers: int = 1,
    standard_env: dict[str, str] | None = None,
    **env: str,
) -> EdgeProcess:
    """Start ``userstream edge`` on a free port with only ``env`` (names without ``USERSTREAM_``) set.

    ``standard_env``: variables set as named (``OTEL_*``, ``PROMETHEUS_MULTIPROC_DIR``).
    """
    port = free_port()
    environment = {key: value for key, value in os.environ.items() if not key.startswith("USERSTREAM_")}
    environment.update({f"USERSTREAM_{key}": value for key, value in env.items()})
    environment.update(standard_env or {})
    with log_file.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "userstream"),
            "edge",
            "--port",
            str(port),
            "--workers",
            str(workers),
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    edge = EdgeProcess(process, port, log_file)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if process.returncode is not None:
            raise RuntimeError(f"edge exited with {process.returncode}: {edge.log_tail()}")
        with contextlib.suppress(OSError, ValueError, IndexError, TimeoutError):
            response = await request(edge.base_url, "/readyz", timeout=1.0)
            if isinstance(response, HTTPResponse) and response.status == 200:
                return edge
        if asyncio.get_running_loop().time() > deadline:
            await edge.stop()
            raise TimeoutError(f"edge not ready within {timeout} s: {edge.log_tail()}")
        await asyncio.sleep(0.05)
