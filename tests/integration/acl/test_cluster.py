"""acl on a 3-node JetStream cluster: buckets at 3 replicas, and a node failure survived without losing events."""

from __future__ import annotations

import nats
import pytest

from tests.conftest import start_activity
from tests.integration.acl.conftest import serving, start_acl
from tests.support.cluster import NatsCluster
from userstream.events import ActivityInput
from userstream.process import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


async def test_acl_follows_through_the_loss_of_its_nats_node(nats_cluster: NatsCluster) -> None:
    activity = await start_activity(nats_cluster.urls, STREAM_REPLICAS="3")
    acl = await start_acl(nats_cluster.urls, STREAM_REPLICAS="3")
    try:
        await acl.client.grant_membership("alice", "acme", "member")
        await acl.client.set_system_role("alice", "admin")
        client = await nats.connect(servers=nats_cluster.urls.split(","))
        try:
            manager = client.jsm()
            for name in ("KV_ACL_SYSTEM_ROLES", "ACL_SNAPSHOTS"):
                assert (await manager.stream_info(name)).config.num_replicas == 3
        finally:
            await client.close()

        # Take down the node acl's connection (and so its ordered consumer) is on.
        connected = acl.service.connection.client.connected_url
        assert connected is not None
        victim = next(node for node in nats_cluster.nodes if node.port == connected.port)
        victim.kill()

        async def recorded() -> bool:
            try:
                await activity.client.record(
                    ActivityInput(type="membership.created", user_id="bob", organization_id="acme", role="member")
                )
            except Exception:  # the stream may be electing a leader
                return False
            return True

        await wait_for(recorded, timeout=30.0, interval=0.2)

        async def reflected() -> bool:
            try:
                subject = await acl.client.get_subject("bob", "now")
            except Exception:
                return False
            return subject.memberships == {"acme": "member"}

        await wait_for(reflected, timeout=30.0, interval=0.2)
        assert await serving(acl.address)
        await acl.client.grant_membership("alice", "globex", "admin")
        subject = await acl.client.get_subject("alice")
        assert (subject.memberships, subject.system_role) == ({"acme": "member", "globex": "admin"}, "admin")
    finally:
        await acl.close()
        await activity.client.close()
        await activity.service.stop()
