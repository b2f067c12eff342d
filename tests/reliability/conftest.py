"""Fixtures of the reliability suite: a deployment of separate service processes, and the shapes of short runs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from tests.reliability._deployment import Deployment
from tests.reliability._soak import RunResult

# A small queue limit so that a reader who falls behind is really cut off (and must resume without loss);
# still above the largest burst a batch delivers at once to a client that keeps up.
EDGE_ENV = {"QUEUE_MAX_BYTES": "262144", "PING_INTERVAL": "1"}

Deploy = Callable[..., AbstractAsyncContextManager[Deployment]]


@pytest.fixture
def deploy(tmp_path: Path) -> Deploy:
    """``async with deploy(nats_url, **options) as deployment``: services started, stopped at the end."""

    @asynccontextmanager
    async def running(nats_url: str, *, edges: int = 2, env: dict[str, str] | None = None) -> AsyncIterator[Deployment]:
        deployment = Deployment.plan(tmp_path / "deployment", nats_url, edges=edges, env=env, edge_env=EDGE_ENV)
        try:
            await deployment.start()
            yield deployment
        finally:
            await deployment.stop()

    return running


def assert_clean(result: RunResult, deployment: Deployment) -> None:
    """Zero on every count of the oracle, no other problem, every process up; the figures are printed."""
    print(json.dumps(result.figures(), indent=2))  # -s shows them; docs/reliability.md quotes them
    assert result.report.ok, result.report.describe() + "\n" + result.diagnose()
    assert not result.problems, result.problems
    assert not deployment.not_running(), deployment.not_running()
