"""``organization.deleted`` is final in acl: no members from its position on, every membership change refused."""

from __future__ import annotations

import asyncio

import msgspec
import nats
import pytest

from tests.conftest import RunningActivity
from tests.integration.acl.conftest import RunningAcl, start_acl
from userstream.embedded_nats import NatsServerProcess
from userstream.errors import FailedPreconditionError
from userstream.events import ActivityInput
from userstream.rpc.acl import AccessQuestion

pytestmark = pytest.mark.integration


def deletion(organization_id: str) -> ActivityInput:
    return ActivityInput(type="organization.deleted", organization_id=organization_id)


async def test_no_subject_lists_a_deleted_organization_from_its_deletion_on(
    acl: RunningAcl, activity: RunningActivity
) -> None:
    client = acl.client
    await client.grant_membership("alice", "acme", "admin")
    await client.grant_membership("alice", "globex", "member")
    await client.grant_membership("bob", "acme", "member")
    before = await activity.client.get_cursor()
    deleted = (await activity.client.record(deletion("acme"))).cursor

    assert (await client.get_subject("alice", "now")).memberships == {"globex": "member"}
    assert (await client.get_subject("bob", "now")).memberships == {}
    assert (await client.get_subject("alice", deleted)).memberships == {"globex": "member"}
    # Earlier positions keep their history: a resume from before the deletion replays up to it.
    assert (await client.get_subject("alice", before)).memberships == {"acme": "admin", "globex": "member"}
    assert (await client.get_subject("bob", "")).memberships == {}
    (alice, bob) = await client.get_subjects([("alice", ""), ("bob", before)])
    assert not isinstance(alice, Exception)
    assert not isinstance(bob, Exception)
    assert (alice.memberships, bob.memberships) == ({"globex": "member"}, {"acme": "member"})
    assert await client.check_access("alice", [AccessQuestion("page", "acme"), AccessQuestion("page", "globex")]) == [
        False,
        True,
    ]


async def test_every_membership_change_is_refused_and_the_log_does_not_move(
    acl: RunningAcl, activity: RunningActivity
) -> None:
    client = acl.client
    await client.grant_membership("alice", "acme", "admin")
    await activity.client.record(deletion("acme"))
    await client.get_subject("alice", "now")  # this replica has applied the deletion
    head = await activity.client.get_cursor()
    for change in (
        client.grant_membership("carol", "acme", "member"),  # would be new
        client.grant_membership("alice", "acme", "member"),  # was ALREADY_EXISTS
        client.update_membership("alice", "acme", "member"),
        client.revoke_membership("alice", "acme"),
        client.revoke_membership("dave", "acme"),  # was NOT_FOUND
    ):
        with pytest.raises(FailedPreconditionError, match="'acme'"):
            await change
    assert await activity.client.get_cursor() == head


async def test_a_replica_that_has_not_applied_the_deletion_yet_is_refused_by_the_log(
    acl: RunningAcl, activity: RunningActivity
) -> None:
    """acl's own state may lag behind the log; the condition on the organization's tombstone does not."""
    await acl.client.grant_membership("alice", "acme", "admin")
    await activity.client.record(deletion("acme"))
    acl.service.log.deleted.forget()  # as if the tombstone had not reached this replica yet
    follower = acl.service.follower
    projection = follower.projection
    projection.deleted.pop("acme", None)
    with pytest.raises(FailedPreconditionError, match="'acme'"):
        await acl.client.grant_membership("carol", "acme", "member")


async def test_a_restart_from_a_snapshot_still_knows_after_the_log_forgot(
    nats_server: NatsServerProcess, short_log: RunningActivity
) -> None:
    first = await start_acl(nats_server.url)
    await first.client.grant_membership("alice", "acme", "admin")
    await short_log.client.record(deletion("acme"))
    await first.client.get_subject("alice", "now")
    await first.close()  # writes a last snapshot
    # Pages until the deletion and its tombstone left the log (and nothing after the snapshot did).
    client = await nats.connect(nats_server.url)
    try:
        for index in range(20):
            info = await client.jsm().stream_info("ACTIVITY", subjects_filter="tombstone.*.*")
            if not info.state.subjects:
                break
            page = ActivityInput(type="page.updated", organization_id="globex", entity_id=f"p{index}")
            await short_log.client.record(page)
        assert not info.state.subjects
    finally:
        await client.close()
    second = await start_acl(nats_server.url)
    try:
        assert (await second.client.get_subject("alice", "now")).memberships == {}
        with pytest.raises(FailedPreconditionError, match="'acme'"):
            await second.client.grant_membership("alice", "acme", "member")
    finally:
        await second.close()


ROUNDS = 15
GRANTERS = 3


async def test_grants_racing_the_deletion_never_land_after_it(
    acl: RunningAcl, activity: RunningActivity, nats_server: NatsServerProcess
) -> None:
    """acl grants members into an organization while activity deletes it, round after round: every grant is
    recorded before the deletion or refused, never after it."""
    granted: dict[str, list[int]] = {}
    for round_ in range(ROUNDS):
        organization_id = f"race-{round_}"
        granted[organization_id] = []
        started = asyncio.Event()

        async def grant(lane: int, organization_id: str = organization_id, started: asyncio.Event = started) -> None:
            for index in range(10_000):
                try:
                    change = await acl.client.grant_membership(f"u{lane}-{index}", organization_id, "member")
                except FailedPreconditionError:
                    return
                granted[organization_id].append(int(change.cursor) % 10**12)
                started.set()
            raise AssertionError("the deletion never stopped the grants")

        async def delete(organization_id: str = organization_id, started: asyncio.Event = started) -> None:
            await started.wait()
            await activity.client.record(deletion(organization_id))

        await asyncio.wait_for(asyncio.gather(delete(), *(grant(lane) for lane in range(GRANTERS))), 60)

    deleted_at: dict[str, int] = {}
    after_deletion = []
    client = await nats.connect(nats_server.url)
    try:
        jsm = client.jsm()
        info = await jsm.stream_info("ACTIVITY")
        for sequence in range(info.state.first_seq, info.state.last_seq + 1):
            message = await jsm.get_msg("ACTIVITY", sequence, direct=True)
            assert message.subject is not None
            if not message.subject.startswith(("user.", "org.")):
                continue
            body = msgspec.json.decode(message.data or b"{}")
            organization_id = body["organizationId"]
            if organization_id in deleted_at:
                after_deletion.append((sequence, message.subject, body["type"]))
            elif body["type"] == "organization.deleted":
                deleted_at[organization_id] = sequence
    finally:
        await client.close()
    assert after_deletion == []
    for organization_id, cursors in granted.items():
        assert cursors, organization_id
        assert max(cursors) < deleted_at[organization_id]
