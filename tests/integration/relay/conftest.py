"""Fixtures for the outbox and the relay (PostgreSQL itself: ``postgres`` and ``database`` in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
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


def relay_process(tmp_path: Path, nats_url: str, dsn: str, name: str = "relay", **env: str) -> ServiceProcess:
    """``userstream relay`` as a subprocess (for SIGKILL)."""
    environment = clean_environment(NATS_URL=nats_url, OUTBOX_DSN=dsn, LOG_FORMAT="console", **env)
    return ServiceProcess("relay", environment, tmp_path / f"{name}.log")
