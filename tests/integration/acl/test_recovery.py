"""Restarts: snapshot plus log recovers the state; a log that lost what no snapshot covers is refused."""

from __future__ import annotations

import secrets

import pytest

from tests.conftest import RunningActivity, start_activity
from tests.integration.acl.conftest import read_membership_log, replay, serving, start_acl
from userstream.acl.follower import SyncState
from userstream.acl.settings import AclTuning
from userstream.acl.snapshots import SnapshotStore
from userstream.embedded_nats import NatsServerProcess
from userstream.errors import UnavailableError
from userstream.events import ActivityInput
from userstream.nats_connection import NatsConnection
from userstream.settings import NatsSettings

pytestmark = pytest.mark.integration


def membership(user_id: str, organization_id: str, role: str = "member", action: str = "created") -> ActivityInput:
    return ActivityInput(
        type=f"membership.{action}", user_id=user_id, organization_id=organization_id, role=role if role else ""
    )


def page(organization_id: str = "acme") -> ActivityInput:
    return ActivityInput(type="page.updated", entity_id="p1", organization_id=organization_id)


async def test_a_restart_recovers_from_the_snapshot_and_the_log(
    nats_server: NatsServerProcess, short_log: RunningActivity
) -> None:
    first = await start_acl(nats_server.url, ACL_SNAPSHOT_CHUNK_BYTES="1024")
    # Random organization ids: a snapshot that does not compress below one chunk.
    organizations = [secrets.token_hex(8) for _ in range(100)]
    for index, organization_id in enumerate(organizations):
        await first.client.grant_membership(f"user{index}", organization_id, "member")
    await first.client.revoke_membership("user0", organizations[0])
    await first.client.update_membership("user1", organizations[1], "admin")
    await first.close()  # writes a last snapshot
    assert await snapshot_messages(nats_server) >= 3  # at least two chunks and the manifest

    # Meanwhile, fewer events than the log keeps: everything after the snapshot is still there.
    await short_log.client.record(membership("user2", "globex"))
    await short_log.client.record(membership("user3", organizations[3], role="", action="deleted"))
    for _ in range(5):
        await short_log.client.record(page())
    logged_users = {entry.event.user_id for entry in await read_membership_log(nats_server.url)}
    assert "user50" not in logged_users  # only the snapshot still knows most members

    second = await start_acl(nats_server.url)
    try:
        assert await serving(second.address)
        assert (await second.client.get_subject("user0", "now")).memberships == {}
        assert (await second.client.get_subject("user1")).memberships == {organizations[1]: "admin"}
        assert (await second.client.get_subject("user2")).memberships == {
            organizations[2]: "member",
            "globex": "member",
        }
        assert (await second.client.get_subject("user3")).memberships == {}
        assert (await second.client.get_subject("user50")).memberships == {organizations[50]: "member"}
        # History restored too: the state as of a cursor from before the restart that the log still covers.
        head = await short_log.client.get_cursor()
        before_revoke = str(int(head) - 6)
        assert (await second.client.get_subject("user3", before_revoke)).memberships == {organizations[3]: "member"}
    finally:
        await second.close()


async def test_a_retention_gap_refuses_to_serve(nats_server: NatsServerProcess, short_log: RunningActivity) -> None:
    for index in range(15):
        await short_log.client.record(membership(f"user{index}", "acme"))
    refused = await start_acl(nats_server.url)
    try:
        assert refused.service.follower.state is SyncState.REFUSED
        assert "purged unseen" in (refused.service.follower.refusal or "")
        assert not await serving(refused.address)
        with pytest.raises(UnavailableError, match="refuses to serve"):
            await refused.client.get_subject("user14")
        with pytest.raises(UnavailableError):
            await refused.client.grant_membership("user99", "acme", "member")
        with pytest.raises(UnavailableError):
            await refused.client.check_access("user14", [])
    finally:
        await refused.close()
    # A refusing replica writes no snapshot: its state would be wrong.
    assert await load_snapshot(nats_server) is None


async def test_accepting_the_gap_serves_what_the_log_still_holds(
    nats_server: NatsServerProcess, short_log: RunningActivity
) -> None:
    for index in range(15):
        await short_log.client.record(membership(f"user{index}", "acme"))
    acl = await start_acl(nats_server.url, accept_retention_gap=True)
    try:
        assert await serving(acl.address)
        expected = replay(await read_membership_log(nats_server.url))
        assert (await acl.client.get_subject("user14", "now")).memberships == expected["user14"]
        assert (await acl.client.get_subject("user0")).memberships == {}  # purged before it was seen
    finally:
        await acl.close()


async def test_an_older_snapshot_never_replaces_a_newer_one(nats_server: NatsServerProcess) -> None:
    activity = await start_activity(nats_server.url)
    acl = await start_acl(nats_server.url)
    connection = NatsConnection(NatsSettings(servers=(nats_server.url,)), name="test")
    await connection.connect()
    try:
        await acl.client.grant_membership("alice", "acme", "member")
        await acl.service.maintenance.tick()
        store = SnapshotStore(connection, AclTuning(), replicas=1)
        written = await store.load()
        assert written is not None
        assert not await store.save(written.projection, written.position - 1)
        assert not await store.save(written.projection, written.position)
        again = await store.load()
        assert again is not None
        assert again.position == written.position
    finally:
        await connection.close()
        await acl.close()
        await activity.client.close()
        await activity.service.stop()


async def load_snapshot(nats_server: NatsServerProcess) -> object:
    connection = NatsConnection(NatsSettings(servers=(nats_server.url,)), name="test")
    await connection.connect()
    try:
        store = SnapshotStore(connection, AclTuning(), replicas=1)
        await store.open()
        return await store.load()
    finally:
        await connection.close()


async def snapshot_messages(nats_server: NatsServerProcess) -> int:
    connection = NatsConnection(NatsSettings(servers=(nats_server.url,)), name="test")
    await connection.connect()
    try:
        info = await connection.manager.stream_info(AclTuning().snapshot_stream)
        return int(info.state.messages)
    finally:
        await connection.close()


async def test_a_change_after_retention_emptied_the_members_subject(
    nats_server: NatsServerProcess, short_log: RunningActivity
) -> None:
    acl = await start_acl(nats_server.url)
    try:
        await acl.client.grant_membership("alice", "acme", "admin")
        for _ in range(12):
            await short_log.client.record(page())
        # The log no longer holds alice's event: her subject's last sequence is 0, while acl remembers hers.
        assert await read_membership_log(nats_server.url) == []
        revoked = await acl.client.revoke_membership("alice", "acme")
        assert revoked.role == "admin"
        assert [entry.event.action.value for entry in await read_membership_log(nats_server.url)] == ["delete"]
        assert (await acl.client.get_subject("alice", "now")).memberships == {}
    finally:
        await acl.close()
