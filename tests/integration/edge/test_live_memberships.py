"""Permission changes while connected: grant, revoke, role change, organization deleted (CONTRACT §4, issue 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.edge.conftest import StackFactory
from tests.integration.edge.test_permission_matrix import RESTRICTIVE_POLICY
from tests.support.edge import wait_until
from tests.support.stack import Stack
from userstream.errors import FailedPreconditionError
from userstream.events import ActivityInput

pytestmark = pytest.mark.integration


async def test_grant_delivers_events_recorded_right_behind_it(stack: Stack) -> None:
    """The org's events stored before the new channel's subscription is active come from the log."""
    async with await stack.stream("bob") as stream:
        assert (await stream.next_event()).event == "offset"
        before = await stack.page("acme", "before")
        results = await stack.activity.client.record_many(
            [
                ActivityInput(type="membership.created", organization_id="acme", user_id="bob", role="member"),
                *(ActivityInput(type="page.updated", organization_id="acme", entity_id=f"p{i}") for i in range(20)),
            ]
        )
        cursors = [result.cursor for result in results]
        received = await stream.change_ids_until(cursors[-1])
        assert received == cursors
        assert before not in received


async def test_revocation_inside_a_batch(stack: Stack) -> None:
    await stack.acl.grant_membership("bob", "acme", "member")
    async with await stack.stream("bob") as stream:
        assert (await stream.next_event()).event == "offset"
        results = await stack.activity.client.record_many(
            [
                ActivityInput(type="page.updated", organization_id="acme", entity_id="p1"),
                ActivityInput(type="membership.deleted", organization_id="acme", user_id="bob"),
                *(ActivityInput(type="page.updated", organization_id="acme", entity_id=f"p{i}") for i in range(10)),
            ]
        )
        marker = await stack.acl.grant_membership("bob", "marker", "member")
        received = await stream.change_ids_until(marker.cursor)
        assert received == [results[0].cursor, results[1].cursor, marker.cursor]
    # bob left acme: nobody on this edge needs its channel any more.
    await wait_until(lambda: "org.acme" not in stack.edge.runtime.hub.channels, 5)


async def test_role_change_narrows_what_a_role_sees_from_its_event_on(make_stack: StackFactory, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(RESTRICTIVE_POLICY)  # attachments: admins only
    stack = await make_stack(POLICY=str(policy))
    await stack.acl.grant_membership("vic", "acme", "admin")
    async with await stack.stream("vic") as stream:
        assert (await stream.next_event()).event == "offset"
        seen_as_admin = await stack.entity("attachment", "acme", "created")
        narrowed = await stack.acl.update_membership("vic", "acme", "viewer")
        hidden = await stack.entity("attachment", "acme", "updated")
        page = await stack.page("acme")
        invoice = await stack.entity("invoice", "acme", "created")  # admins and members only
        widened = await stack.acl.update_membership("vic", "acme", "admin")
        seen_again = await stack.entity("attachment", "acme", "deleted")
        received = await stream.change_ids_until(seen_again)
        assert received == [seen_as_admin, narrowed.cursor, page, widened.cursor, seen_again]
        assert hidden not in received
        assert invoice not in received


async def test_organization_deleted_is_delivered_then_its_channel_dropped(stack: Stack) -> None:
    await stack.acl.grant_membership("dora", "acme", "member")
    await stack.acl.grant_membership("dora", "globex", "member")
    async with await stack.stream("dora") as stream:
        assert (await stream.next_event()).event == "offset"
        page = await stack.page("acme")
        deleted = await stack.entity("organization", "acme", "deleted")
        other = await stack.page("globex")
        assert await stream.change_ids_until(other) == [page, deleted, other]
        await wait_until(lambda: "org.acme" not in stack.edge.runtime.hub.channels, 5)
        assert "org.globex" in stack.edge.runtime.hub.channels
        # Deletion is final (CONTRACT §2): nothing of the organization follows, not even a new membership.
        with pytest.raises(FailedPreconditionError, match="acme"):
            await stack.acl.update_membership("dora", "acme", "admin")
        with pytest.raises(FailedPreconditionError, match="acme"):
            await stack.page("acme", "again")
        marker = await stack.page("globex", "marker")
        assert await stream.change_ids_until(marker) == [marker]


async def test_another_users_membership_events_never_arrive(stack: Stack) -> None:
    await stack.acl.grant_membership("erin", "acme", "admin")
    async with await stack.stream("erin") as stream:
        assert (await stream.next_event()).event == "offset"
        await stack.acl.grant_membership("frank", "acme", "member")
        await stack.acl.revoke_membership("frank", "acme")
        await stack.membership("frank", "acme", "created", "admin")
        marker = await stack.page("acme")
        assert await stream.change_ids_until(marker) == [marker]
