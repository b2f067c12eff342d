"""Who receives what: users × event types × organizations × roles, live and replayed (CONTRACT §4).

The expected lists come from ``_Oracle`` below, written from the contract's
words alone (tables spelled out by hand; nothing from ``userstream.permissions``
or ``userstream.memberships``). Every user connects before the scenario, reads
it live, then reconnects from the cursor it started at and must receive exactly
the same list again, replayed (memberships as they stood at each event).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.edge.conftest import StackFactory
from tests.support.sse import open_stream
from tests.support.stack import Stack
from userstream.errors import FailedPreconditionError

pytestmark = pytest.mark.integration

RESTRICTIVE_POLICY = """
[roles]
organization = ["admin", "member", "viewer"]

[entities.organization]
read = ["admin", "member", "viewer"]

[entities.page]
read = ["admin", "member", "viewer"]
public = true

[entities.attachment]
read = ["admin"]

[entities.invoice]
read = ["admin", "member"]
"""

# Who may read each entity type, by organization role, copied by hand from each policy's text.
DEFAULT_READERS = {
    "organization": {"admin", "member"},
    "page": {"admin", "member"},
    "attachment": {"admin", "member"},
}
RESTRICTIVE_READERS = {
    "organization": {"admin", "member", "viewer"},
    "page": {"admin", "member", "viewer"},
    "attachment": {"admin"},
    "invoice": {"admin", "member"},
}
PUBLIC_TYPES = {"page"}  # both policies mark only pages public

ORGS = ("acme", "globex", "initech")
SYSTEM_ADMINS = {"eve", "fay"}


@dataclass
class Recorded:
    cursor: str
    kind: str  # "membership", or the entity type
    action: str  # created / updated / deleted
    organization_id: str
    user_id: str | None = None  # the member, for membership events
    role: str | None = None
    public: bool = False


@dataclass
class _Oracle:
    """What each user should see, in order, by the contract's rules applied event by event."""

    readers: dict[str, set[str]]
    memberships: dict[str, dict[str, str]]  # user → organization → role, before the scenario
    events: list[Recorded] = field(default_factory=list)

    def expected(self, user: str) -> list[str]:
        held = dict(self.memberships.get(user, {}))
        seen: list[str] = []
        for event in self.events:
            if event.kind == "membership":
                if event.user_id != user:
                    continue  # never another user's membership
                seen.append(event.cursor)
                if event.action == "deleted":
                    held.pop(event.organization_id, None)
                else:
                    assert event.role is not None
                    held[event.organization_id] = event.role
                continue
            role = held.get(event.organization_id)
            if event.kind == "organization" and event.action == "deleted":
                held.pop(event.organization_id, None)  # final (CONTRACT §2): no members from here on
            if role is None:
                continue  # membership is required, system admins included
            if user in SYSTEM_ADMINS or role in self.readers[event.kind]:
                seen.append(event.cursor)
        return seen

    def expected_public(self) -> list[str]:
        return [e.cursor for e in self.events if e.kind in PUBLIC_TYPES and e.public]


def _initial_memberships(viewer: str) -> dict[str, dict[str, str]]:
    return {
        "ann": {"acme": "admin"},
        "ben": {"acme": "member", "globex": "member"},
        "cat": {"globex": viewer},
        "eve": {"acme": "member"},
        "gus": {"initech": "member"},
        # dan and fay: no memberships; fay is a system admin
    }


USERS = ("ann", "ben", "cat", "dan", "eve", "fay", "gus")


async def _run_scenario(stack: Stack, readers: dict[str, set[str]], viewer: str) -> None:
    memberships = _initial_memberships(viewer)
    for user, orgs in memberships.items():
        for org, role in orgs.items():
            await stack.acl.grant_membership(user, org, role)
    for admin in SYSTEM_ADMINS:
        await stack.acl.set_system_role(admin, "admin")

    streams = {user: await stack.stream(user) for user in USERS}
    starts: dict[str, str] = {}
    for user, stream in streams.items():
        offset = await stream.next_event()
        assert offset.event == "offset"
        starts[user] = offset.id or ""
    public = await open_stream(stack.base_url, "/public/stream")
    public_start = (await public.next_event()).id or ""

    oracle = _Oracle(readers, memberships)
    events = oracle.events

    async def entity(kind: str, org: str, action: str, *, public: bool = False) -> None:
        fields: dict[str, object] = {"public": True} if public else {}
        cursor = await stack.entity(kind, org, action, **fields)
        events.append(Recorded(cursor, kind, action, org, public=public))

    async def membership(user: str, org: str, action: str, role: str = "") -> None:
        cursor = await stack.membership(user, org, action, role)
        events.append(Recorded(cursor, "membership", action, org, user_id=user, role=role or None))

    kinds = [kind for kind in readers if kind != "organization"]
    for org in ORGS:
        await entity("organization", org, "created")
        await entity("organization", org, "updated")
        for kind in kinds:
            for action in ("created", "updated", "deleted"):
                await entity(kind, org, action)
        await entity("page", org, "created", public=True)
    # Memberships change mid-stream (recorded straight through activity): later events follow them.
    await membership("gus", "acme", "created", "member")
    await entity("attachment", "acme", "updated")
    await entity("page", "acme", "updated")
    await membership("gus", "acme", "updated", viewer)
    await entity("attachment", "acme", "created")
    await entity("page", "acme", "updated", public=True)
    await membership("gus", "acme", "updated", "admin")
    await entity("attachment", "acme", "deleted")
    await membership("gus", "acme", "deleted")  # no role: the stream fills in the one gus had
    await entity("page", "acme", "deleted")
    await membership("ben", "globex", "deleted")
    await entity("page", "globex", "updated")
    await membership("zed", "acme", "created", "admin")  # nobody connected is zed
    await membership("dan", "globex", "created", "member")
    await entity("organization", "globex", "updated")
    for org in ORGS:
        await entity("organization", org, "deleted")
    with pytest.raises(FailedPreconditionError, match="acme"):
        await entity("page", "acme", "updated")  # after acme's deletion: refused, nothing recorded
    markers = {}
    for user in USERS:
        await membership(user, f"marker-{user}", "created", "member")
        markers[user] = events[-1].cursor
    await entity("page", "umbrella", "created", public=True)  # the public stream's last event

    for user, stream in streams.items():
        received = await stream.change_ids_until(markers[user])
        assert received == oracle.expected(user), user
        await stream.close()
    public_ids = await public.change_ids_until(events[-1].cursor)
    assert public_ids == oracle.expected_public()
    await public.close()

    # The same answers again, replayed from each user's start.
    for user in USERS:
        async with await stack.stream(user, last_event_id=starts[user]) as resumed:
            replayed = await resumed.change_ids_until(markers[user])
            assert replayed == oracle.expected(user), f"{user} (replayed)"
    async with await open_stream(stack.base_url, "/public/stream", headers={"Last-Event-ID": public_start}) as again:
        assert await again.change_ids_until(events[-1].cursor) == oracle.expected_public()


async def test_default_policy(make_stack: StackFactory) -> None:
    stack = await make_stack()
    await _run_scenario(stack, DEFAULT_READERS, viewer="member")


async def test_restrictive_policy_with_a_custom_entity_type(make_stack: StackFactory, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(RESTRICTIVE_POLICY)
    stack = await make_stack(POLICY=str(policy))
    await _run_scenario(stack, RESTRICTIVE_READERS, viewer="viewer")


def test_oracle_spot_checks() -> None:
    """The oracle itself, on cases worked out by hand from CONTRACT §4."""
    oracle = _Oracle(RESTRICTIVE_READERS, {"v": {"o": "viewer"}, "a": {"o": "admin"}})
    oracle.events = [
        Recorded("1", "attachment", "created", "o"),
        Recorded("2", "page", "created", "o"),
        Recorded("3", "membership", "updated", "o", user_id="v", role="admin"),
        Recorded("4", "attachment", "updated", "o"),
        Recorded("5", "membership", "deleted", "o", user_id="a"),
        Recorded("6", "page", "updated", "o"),
        Recorded("7", "organization", "deleted", "o"),
        Recorded("8", "page", "updated", "o"),
    ]
    assert oracle.expected("v") == ["2", "3", "4", "6", "7"]
    assert oracle.expected("a") == ["1", "2", "4", "5"]
    assert oracle.expected("nobody") == []
