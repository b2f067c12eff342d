"""A service process dies under a running workload (kill -9) and restarts; the oracle checks every stream after."""

from __future__ import annotations

import random

import pytest

from tests.reliability._faults import FAIL_FAST, kill_acl, kill_activity, kill_edge
from tests.reliability._soak import Chaos, run
from tests.reliability._workload import Shape
from tests.reliability.conftest import Deploy, assert_clean
from userstream.embedded_nats import NatsServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

SHAPE = Shape(users=10, orgs=4, events=1500, batch=(20, 100), churn=(0, 2), pause=0.25)
CHAOS = Chaos(drop_every=0.5, late_clients=2, tabs=1)


async def test_edge_killed_and_restarted(deploy: Deploy, nats_server: NatsServerProcess) -> None:
    async with deploy(nats_server.url) as deployment:
        result = await run(deployment, SHAPE, seed=21, chaos=CHAOS, fault=kill_edge(0))
        assert_clean(result, deployment)
    assert result.notes["streams on the killed edge"] > 0


async def test_acl_killed_open_streams_continue_new_connects_wait(
    deploy: Deploy, nats_server: NatsServerProcess
) -> None:
    async with deploy(nats_server.url) as deployment:
        result = await run(deployment, SHAPE, seed=22, chaos=CHAOS, fault=kill_acl())
        assert_clean(result, deployment)
    assert result.notes["delivered while acl was down"] > 0
    assert result.notes["new connects answered while acl was down"] == ["503 unavailable with Retry-After"]


async def test_activity_killed_during_a_batch(deploy: Deploy, nats_server: NatsServerProcess) -> None:
    shape = Shape(users=10, orgs=4, events=3000, batch=(300, 600), churn=(0, 1), pause=0.0)
    rng = random.Random(23)
    async with deploy(nats_server.url) as deployment:
        fault = kill_activity(delay=lambda: rng.uniform(0.0, 0.05))
        result = await run(deployment, shape, seed=23, chaos=CHAOS, fault=fault)
        assert_clean(result, deployment)
    assert result.notes["a call to the dead activity failed after (ms)"] < FAIL_FAST * 1000
    assert result.workload.stats["calls retried after UNAVAILABLE"] > 0
