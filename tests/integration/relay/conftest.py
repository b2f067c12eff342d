"""Fixtures for the outbox and the relay (PostgreSQL itself: ``postgres`` and ``database`` in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import RunningActivity, service_env
from tests.support.processes import ServiceProcess, clean_environment
from userstream.embedded_nats import NatsServerProcess
from userstream.outbox import install
from userstream.relay.service import RelayService
from userstream.relay.settings import RelaySettings


@pytest.fixture
def outbox_dsn(database: str) -> str:
    """A fresh database with the outbox installed."""
    install(database)
    return database


@dataclass
class RunningRelay:
    service: RelayService

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.service.port}"


async def start_relay(nats_url: str, dsn: str, **env: str) -> RunningRelay:
    settings = RelaySettings.load(port=0, env=service_env(nats_url, OUTBOX_DSN=dsn, **env))
    service = RelayService(settings)
    await service.start()
    return RunningRelay(service)


@pytest.fixture
async def relay(
    nats_server: NatsServerProcess, activity: RunningActivity, outbox_dsn: str
) -> AsyncIterator[RunningRelay]:
    """A relay in this process, beside ``activity`` (which provisions the log)."""
    running = await start_relay(nats_server.url, outbox_dsn)
    try:
        yield running
    finally:
        await running.service.stop()


MakeRelay = Callable[..., ServiceProcess]


@pytest.fixture
def make_relay(tmp_path: Path) -> Iterator[MakeRelay]:
    """``make_relay(nats_url, dsn, name="relay", **env)``: ``userstream relay`` as a subprocess (for SIGKILL),
    killed at teardown whatever the test did."""
    made: list[ServiceProcess] = []

    def make(nats_url: str, dsn: str, name: str = "relay", **env: str) -> ServiceProcess:
        environment = clean_environment(NATS_URL=nats_url, OUTBOX_DSN=dsn, LOG_FORMAT="console", **env)
        process = ServiceProcess("relay", environment, tmp_path / f"{name}.log")
        made.append(process)
        return process

    yield make
    for process in made:
        process.kill()
