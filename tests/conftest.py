"""Fixtures shared by every test: real NATS servers and in-process services on free ports."""

from __future__ import annotations

import sys
import traceback
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cluster import NatsCluster
from tests.support.postgres import PostgresServer
from userstream.activity.service import ActivityService
from userstream.activity.settings import ActivitySettings
from userstream.embedded_nats import NatsServerProcess
from userstream.rpc.activity import ActivityClient
from userstream.settings import Env

if sys.version_info < (3, 12):
    # CPython 3.11 draws a traceback's ^^^ carets by parsing source with `ast`, whose
    # recursion bookkeeping is shared between threads: two threads formatting a
    # traceback at once can fail with "SystemError: AST constructor recursion depth
    # mismatch" (python/cpython#106905). The tests run servers' threads beside the
    # loop; the carets are not worth a flaky suite.
    traceback._extract_caret_anchors_from_line_segment = lambda segment: None  # type: ignore[attr-defined]


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServerProcess]:
    """A fresh single nats-server with JetStream, its store in the test's temp dir."""
    server = NatsServerProcess(store_dir=tmp_path / "nats", log_file=tmp_path / "nats.log")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three clustered nats-servers with JetStream."""
    cluster = NatsCluster(root=tmp_path / "cluster")
    cluster.start()
    try:
        yield cluster
    finally:
        for node in cluster.nodes:
            node.kill()


@dataclass
class RunningActivity:
    service: ActivityService
    client: ActivityClient

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.service.port}"


def service_env(nats_url: str, **overrides: str) -> Env:
    """An environment with only what the test sets (the host's USERSTREAM_* never leak in)."""
    values = {"USERSTREAM_NATS_URL": nats_url, **{f"USERSTREAM_{key}": value for key, value in overrides.items()}}
    return Env(values)


async def start_activity(nats_url: str, **env: str) -> RunningActivity:
    settings = ActivitySettings.load(port=0, env=service_env(nats_url, **env))
    service = ActivityService(settings)
    await service.start()
    await service.wait_ready()
    return RunningActivity(service, ActivityClient(f"127.0.0.1:{service.port}"))


@pytest.fixture
async def activity(nats_server: NatsServerProcess) -> AsyncIterator[RunningActivity]:
    """The activity service in this process, on a free port, against ``nats_server``."""
    running = await start_activity(nats_server.url)
    try:
        yield running
    finally:
        await running.client.close()
        await running.service.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (started on first use); tests take a ``database`` each."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def database(postgres: PostgresServer) -> str:
    """A fresh, empty database on the session's PostgreSQL; its DSN."""
    return postgres.create_database()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow (long runs)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="long run: pass --run-slow (make test-all)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)
