"""The soak: membership churn, reconnects anywhere, a slow reader; the oracle finds nothing lost, doubled or leaked.

The short run is part of the default suite; the long one (the full figures of
issue 9, recorded in docs/reliability.md) runs with ``--run-slow``.
"""

from __future__ import annotations

import os

import pytest

from tests.reliability._soak import Chaos, run
from tests.reliability._workload import Shape
from tests.reliability.conftest import Deploy, assert_clean
from userstream.embedded_nats import NatsServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

SEED = int(os.environ.get("USERSTREAM_SOAK_SEED", "20261130"))


async def test_short_soak(deploy: Deploy, nats_server: NatsServerProcess) -> None:
    shape = Shape(users=20, orgs=6, events=4000, batch=(20, 150), churn=(0, 3), pause=0.4)
    async with deploy(nats_server.url) as deployment:
        result = await run(deployment, shape, seed=SEED, chaos=Chaos(drop_every=0.15, late_clients=4))
        assert_clean(result, deployment)
    assert result.report.expected > 10_000
    assert result.drops > 50


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_long_soak(deploy: Deploy, nats_server: NatsServerProcess) -> None:
    shape = Shape(users=50, orgs=10, events=50_000, batch=(50, 400), churn=(0, 4), pause=0.3)
    async with deploy(nats_server.url) as deployment:
        result = await run(deployment, shape, seed=SEED, chaos=Chaos(drop_every=0.1, late_clients=6, tabs=3))
        assert_clean(result, deployment)
