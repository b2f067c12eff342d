"""The whole stack in this process for edge tests: real NATS, real gRPC, real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from userstream.embedded_nats import NatsServerProcess

from tests.support.stack import Stack, start_stack


@pytest.fixture
async def stack(nats_server: NatsServerProcess) -> AsyncIterator[Stack]:
    running = await start_stack(nats_server.url, edge_env={"PING_INTERVAL": "0.5"})
    try:
        yield running
    finally:
        await running.stop()
