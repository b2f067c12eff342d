"""``organization.deleted`` is final on the stream (CONTRACT §2): the deletion reaches the members, nothing after it.

Live, on a resume from before the deletion and on a stream opened after it, the same events: what the member
was allowed to see up to and including the deletion, then nothing of the organization.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.edge.conftest import StackFactory
from tests.support.stack import Stack
from userstream.errors import FailedPreconditionError

pytestmark = pytest.mark.integration


async def refused_everywhere(stack: Stack, organization_id: str) -> None:
    """Every kind of later write of the organization is refused."""
    with pytest.raises(FailedPreconditionError, match=organization_id):
        await stack.page(organization_id, "after")
    with pytest.raises(FailedPreconditionError, match=organization_id):
        await stack.entity("organization", organization_id, "updated")
    with pytest.raises(FailedPreconditionError, match=organization_id):
        await stack.membership("alice", organization_id, "updated", "admin")
    with pytest.raises(FailedPreconditionError, match=organization_id):
        await stack.acl.grant_membership("newcomer", organization_id, "member")


async def test_live_resumed_and_new_streams_agree_on_a_deleted_organization(stack: Stack) -> None:
    await stack.acl.grant_membership("alice", "acme", "member")
    await stack.acl.grant_membership("alice", "globex", "member")
    start = await stack.head()
    live = await stack.stream("alice")
    assert (await live.next_event()).event == "offset"
    try:
        page = await stack.page("acme", "p1")
        deleted = await stack.entity("organization", "acme", "deleted")
        await refused_everywhere(stack, "acme")
        marker = await stack.page("globex", "marker")
        assert await live.change_ids_until(marker) == [page, deleted, marker]

        async with await stack.stream("alice", last_event_id=start) as resumed:
            assert await resumed.change_ids_until(marker) == [page, deleted, marker]
        async with await stack.stream("alice", last_event_id=page) as resumed_just_before:
            assert await resumed_just_before.change_ids_until(marker) == [deleted, marker]
        async with await stack.stream("alice", last_event_id=deleted) as resumed_after:
            assert await resumed_after.change_ids_until(marker) == [marker]
        async with await stack.stream("alice") as opened_after:
            offset = await opened_after.next_event()
            assert offset.event == "offset"
            later = await stack.page("globex", "later")
            assert await opened_after.change_ids_until(later) == [later]
        assert "org.acme" not in stack.edge.runtime.hub.channels
    finally:
        await live.close()


GUEST_POLICY = """
[roles]
organization = ["admin", "member", "guest"]

[entities.organization]
read = ["admin", "member"]

[entities.page]
read = ["admin", "member", "guest"]
"""


async def test_the_deletion_reaches_only_members_who_may_read_organization(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(GUEST_POLICY)
    stack = await make_stack(POLICY=str(policy))
    for user_id, role in (("alice", "member"), ("bob", "guest")):
        await stack.acl.grant_membership(user_id, "acme", role)
        await stack.acl.grant_membership(user_id, "globex", "member")
    async with await stack.stream("alice") as alice, await stack.stream("bob") as bob:
        for stream in (alice, bob):
            assert (await stream.next_event()).event == "offset"
        page = await stack.page("acme", "p1")
        deleted = await stack.entity("organization", "acme", "deleted")
        marker = await stack.page("globex", "marker")
        assert await alice.change_ids_until(marker) == [page, deleted, marker]
        assert await bob.change_ids_until(marker) == [page, marker]
