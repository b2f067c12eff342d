"""The whole stack in this process for the SDK's tests, with an edge that can be restarted on its port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import uvicorn

from tests.support.edge import RunningEdge, edge_settings, wait_until
from tests.support.stack import SECRET, Stack, start_stack
from userstream.client import ReconnectPolicy
from userstream.edge.app import create_app
from userstream.edge.settings import EdgeSettings
from userstream.embedded_nats import NatsServerProcess

# Quick reconnects: the tests wait for them.
FAST = ReconnectPolicy(initial_delay=0.05, max_delay=0.3, idle_timeout=10.0)


@dataclass
class RestartableStack:
    stack: Stack
    edge_env: dict[str, str]

    @property
    def base_url(self) -> str:
        return self.stack.base_url

    async def stop_edge(self) -> int:
        """Drain and stop the edge (every stream gets `close` shutdown); returns its port."""
        port = self.stack.edge.port
        await self.stack.edge.stop()
        return port

    async def start_edge(self, port: int) -> None:
        """A new edge process-equivalent (new runtime, new channels) on the same port."""
        settings = edge_settings(
            self.stack.nats_url, f"127.0.0.1:{self.stack.acl_service.port}", SECRET, **self.edge_env
        )
        self.stack.edge = await _serve_on(settings, port)


async def _serve_on(settings: EdgeSettings, port: int) -> RunningEdge:
    app = create_app(settings, owns_process=False)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, loop="none", lifespan="on", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    edge = RunningEdge(server, task, app, port)
    await wait_until(lambda: edge.runtime.ready, 15)
    return edge


@pytest.fixture
async def stack(nats_server: NatsServerProcess) -> AsyncIterator[RestartableStack]:
    edge_env = {"PING_INTERVAL": "0.5", "RETRY_MS": "50"}
    running = await start_stack(nats_server.url, edge_env=edge_env)
    try:
        yield RestartableStack(running, edge_env)
    finally:
        with contextlib.suppress(Exception):
            await running.stop()
