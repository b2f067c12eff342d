"""NATS fails under a running workload: a single server restarts, a cluster loses a node, or the stream's leader.

Every write is retried with its idempotency key until it succeeds, clients resume
with their last cursor, and the oracle then finds every permitted event delivered
once, in order, to the right people.
"""

from __future__ import annotations

import pytest

from tests.reliability._faults import freeze_nats, kill_cluster_node, restart_nats
from tests.reliability._soak import Chaos, run
from tests.reliability._workload import Shape
from tests.reliability.conftest import Deploy, assert_clean
from tests.support.cluster import NatsCluster
from userstream.embedded_nats import NatsServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

SHAPE = Shape(users=10, orgs=4, events=1500, batch=(20, 100), churn=(0, 2), pause=0.25)
CHAOS = Chaos(drop_every=0.5, late_clients=2, tabs=1)


async def test_single_nats_server_restarts_with_its_store(deploy: Deploy, nats_server: NatsServerProcess) -> None:
    async with deploy(nats_server.url) as deployment:
        result = await run(deployment, SHAPE, seed=11, chaos=CHAOS, fault=restart_nats(nats_server))
        assert_clean(result, deployment)
    assert result.workload.stats["calls retried after UNAVAILABLE"] > 0


async def test_nats_freezes_longer_than_the_edge_waits(deploy: Deploy, nats_server: NatsServerProcess) -> None:
    # The edge gives up a catch-up after twice the NATS request timeout (6 s; a flush waits up to 10 s). Frozen for
    # 12 s right after a reconnect storm, catch-ups in flight give up and close their streams `unavailable`; the
    # clients must resume without a gap once NATS answers again.
    async with deploy(nats_server.url) as deployment:
        result = await run(deployment, SHAPE, seed=13, chaos=CHAOS, fault=freeze_nats(nats_server, 12.0))
        assert_clean(result, deployment)
    assert result.workload.stats["calls retried after UNAVAILABLE"] > 0


@pytest.mark.parametrize("choose", ["edge", "leader"])
async def test_cluster_loses_a_node(deploy: Deploy, nats_cluster: NatsCluster, choose: str) -> None:
    env = {"STREAM_REPLICAS": "3"}
    async with deploy(nats_cluster.urls, env=env) as deployment:
        result = await run(deployment, SHAPE, seed=12, chaos=CHAOS, fault=kill_cluster_node(nats_cluster, choose))
        assert_clean(result, deployment)
    assert result.notes["nats nodes left"] == 2
