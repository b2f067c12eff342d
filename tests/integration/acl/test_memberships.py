"""Memberships through acl and through the activity log: read-your-writes, the same effect, the rules."""

from __future__ import annotations

import pytest

from tests.conftest import RunningActivity
from tests.integration.acl.conftest import RunningAcl, read_membership_log, serving
from userstream.embedded_nats import NatsServerProcess
from userstream.errors import AlreadyExistsError, NotFoundError
from userstream.events import ActivityInput
from userstream.process import wait_for
from userstream.rpc.acl import AccessQuestion

pytestmark = pytest.mark.integration


async def test_acl_serves_once_caught_up(acl: RunningAcl) -> None:
    assert await serving(acl.address)


async def test_a_grant_is_visible_as_soon_as_the_call_returns(acl: RunningAcl) -> None:
    change = await acl.client.grant_membership("alice", "acme", "member")
    assert (change.user_id, change.organization_id, change.role) == ("alice", "acme", "member")
    latest = await acl.client.get_subject("alice")
    assert latest.memberships == {"acme": "member"}
    assert latest.cursor == change.cursor
    assert (await acl.client.get_subject("alice", "now")).memberships == {"acme": "member"}


async def test_update_and_revoke_record_their_events(acl: RunningAcl, nats_server: NatsServerProcess) -> None:
    await acl.client.grant_membership("alice", "acme", "member")
    updated = await acl.client.update_membership("alice", "acme", "admin")
    assert (await acl.client.get_subject("alice")).memberships == {"acme": "admin"}
    revoked = await acl.client.revoke_membership("alice", "acme")
    assert revoked.role == "admin"  # the role the member had
    assert (await acl.client.get_subject("alice")).memberships == {}
    assert int(revoked.cursor) > int(updated.cursor)
    logged = await read_membership_log(nats_server.url)
    assert [(m.event.action.value, m.event.role) for m in logged] == [
        ("create", "member"),
        ("update", "admin"),
        ("delete", "admin"),
    ]


async def test_a_second_grant_already_exists_and_missing_members_are_not_found(
    acl: RunningAcl, activity: RunningActivity
) -> None:
    await acl.client.grant_membership("alice", "acme", "member")
    head = await activity.client.get_cursor()
    with pytest.raises(AlreadyExistsError):
        await acl.client.grant_membership("alice", "acme", "admin")
    with pytest.raises(NotFoundError):
        await acl.client.update_membership("alice", "globex", "admin")
    with pytest.raises(NotFoundError):
        await acl.client.revoke_membership("bob", "acme")
    assert await activity.client.get_cursor() == head  # nothing recorded


async def test_events_recorded_through_activity_have_the_same_effect(
    acl: RunningAcl, activity: RunningActivity
) -> None:
    recorded = await activity.client.record(
        ActivityInput(type="membership.created", user_id="bob", organization_id="acme", role="member")
    )
    # "now" runs a barrier: an event recorded before the call is reflected.
    now = await acl.client.get_subject("bob", "now")
    assert now.memberships == {"acme": "member"}
    assert int(now.cursor) >= int(recorded.cursor)

    async def latest_reflects() -> bool:
        return (await acl.client.get_subject("bob")).memberships == {"acme": "member"}

    await wait_for(latest_reflects, timeout=5.0)
    # …and acl's own view of the member now refuses a second grant.
    with pytest.raises(AlreadyExistsError):
        await acl.client.grant_membership("bob", "acme", "member")


async def test_applying_membership_events_is_idempotent(acl: RunningAcl, activity: RunningActivity) -> None:
    record = activity.client.record
    await record(ActivityInput(type="membership.created", user_id="carol", organization_id="acme", role="member"))
    await record(ActivityInput(type="membership.created", user_id="carol", organization_id="acme", role="admin"))
    await record(ActivityInput(type="membership.updated", user_id="carol", organization_id="globex", role="member"))
    await record(ActivityInput(type="membership.deleted", user_id="carol", organization_id="initech"))
    await record(ActivityInput(type="organization.deleted", organization_id="initech"))
    assert (await acl.client.get_subject("carol", "now")).memberships == {"acme": "admin", "globex": "member"}


async def test_an_unknown_user_is_an_empty_subject(acl: RunningAcl) -> None:
    subject = await acl.client.get_subject("nobody", "now")
    assert (subject.user_id, subject.system_role, subject.memberships) == ("nobody", "user", {})
    assert subject.cursor


async def test_system_roles_are_stored_and_read_back(acl: RunningAcl) -> None:
    assert await acl.client.set_system_role("dana", "admin") == "admin"
    assert (await acl.client.get_subject("dana")).system_role == "admin"
    await acl.client.set_system_role("dana", "user")
    assert (await acl.client.get_subject("dana")).system_role == "user"


async def test_check_access_follows_the_policy(acl: RunningAcl, activity: RunningActivity) -> None:
    await acl.client.grant_membership("erin", "acme", "member")
    questions = [
        AccessQuestion("page", "acme"),
        AccessQuestion("attachment", "acme"),
        AccessQuestion("organization", "acme"),
        AccessQuestion("page", "globex"),  # not a member there
    ]
    assert await acl.client.check_access("erin", questions) == [True, True, True, False]
    await acl.client.set_system_role("erin", "admin")
    # A system admin still needs the membership (CONTRACT §4).
    assert await acl.client.check_access("erin", questions) == [True, True, True, False]
    await acl.client.revoke_membership("erin", "acme")
    assert await acl.client.check_access("erin", questions) == [False, False, False, False]
    assert await acl.client.check_access("erin", []) == []
