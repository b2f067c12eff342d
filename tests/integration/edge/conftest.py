"""The whole stack in this process for edge tests: real NATS, real gRPC, real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.support.stack import Stack, start_stack
from userstream.embedded_nats import NatsServerProcess

StackFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture
async def stack(nats_server: NatsServerProcess) -> AsyncIterator[Stack]:
    running = await start_stack(nats_server.url, edge_env={"PING_INTERVAL": "0.5"})
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def make_stack(nats_server: NatsServerProcess) -> AsyncIterator[StackFactory]:
    """Start a stack with settings: ``make_stack(edge_env={...}, POLICY=...)``; stopped after the test."""
    started: list[Stack] = []

    async def make(edge_env: dict[str, str] | None = None, **env: str) -> Stack:
        running = await start_stack(nats_server.url, edge_env=edge_env, **env)
        started.append(running)
        return running

    try:
        yield make
    finally:
        for running in started:
            await running.stop()
