"""Provisioning on a 3-node JetStream cluster with the stream at 3 replicas."""

from __future__ import annotations

import asyncio

import nats
import pytest

from tests.conftest import start_activity
from tests.integration.activity.conftest import STREAM
from tests.support.cluster import NatsCluster
from userstream.cursor import parse_cursor
from userstream.errors import UnavailableError
from userstream.events import ActivityInput

pytestmark = pytest.mark.integration


async def test_stream_is_provisioned_with_three_replicas(nats_cluster: NatsCluster) -> None:
    running = await start_activity(nats_cluster.urls, STREAM_REPLICAS="3")
    client = await nats.connect(servers=nats_cluster.urls.split(","))
    try:
        page = ActivityInput(type="page.created", entity_id="p1", organization_id="acme", idempotency_key="first")
        # Right after the stream is created, the cluster may not yet route its subjects to it from every node
        # (UNAVAILABLE, "no stream listens"): a client retries with the same key, as the contract says.
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            try:
                result = await running.client.record(page)
                break
            except UnavailableError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)
        assert parse_cursor(result.cursor).sequence == 1
        info = await client.jsm().stream_info(STREAM)
        assert info.config.num_replicas == 3
        assert info.cluster is not None
        assert info.cluster.leader in {"n0", "n1", "n2"}
        assert len(info.cluster.replicas or []) == 2
        assert info.state.messages == 1
    finally:
        await client.close()
        await running.client.close()
        await running.service.stop()
