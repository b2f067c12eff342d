"""The edge in this process: uvicorn serving the real app on a free port."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import uvicorn
from userstream.edge.app import TransportExposingApp, create_app
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
    app = create_app(settings, handle_signals=False)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        loop="none",
        http="httptools",
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
