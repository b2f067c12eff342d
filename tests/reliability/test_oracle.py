"""The oracle itself: it must see every kind of failure, and apply CONTRACT §4 exactly (pure, no servers)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.reliability._deployment import POLICY
from tests.reliability.oracle import LoggedEvent, Observation, Oracle, OraclePolicy

POLICY_ = OraclePolicy.from_toml(POLICY)


def event(
    position: int, type_: str, org: str, *, user: str | None = None, role: str | None = None, public: bool = False
) -> LoggedEvent:
    name = type_.split(".", maxsplit=1)[0]
    body: dict[str, Any] = {
        "type": type_,
        "action": {"created": "create", "updated": "update", "deleted": "delete"}[type_.split(".")[1]],
        "entityType": None if name == "membership" else name,
        "resourceType": "membership" if name == "membership" else None,
        "entityId": None if name == "membership" else "e1",
        "organizationId": org,
        "userId": user,
        "createdAt": "2026-11-30T00:00:00.000Z",
        "changedKeys": None,
        "tx": None,
        "data": {"userId": user, "organizationId": org, "role": role} if name == "membership" else {"n": position},
    }
    subject = f"user.{user}" if name == "membership" else f"org.{org}"
    return LoggedEvent(position, str(position), subject, json.dumps(body).encode(), public)


def payload(entry: LoggedEvent, **changes: Any) -> bytes:
    body = {"activityId": entry.cursor, **json.loads(entry.body)}
    return json.dumps({**body, **changes}).encode()


# alice joins acme at 40 and leaves at 90 (CONTRACT §4's own example), with acme's events around.
LOG = [
    event(10, "page.updated", "acme"),
    event(40, "membership.created", "acme", user="alice", role="viewer"),
    event(41, "page.updated", "acme"),
    event(50, "attachment.updated", "acme"),  # viewers may not read attachments
    event(60, "membership.updated", "acme", user="alice", role="member"),
    event(61, "attachment.updated", "acme"),
    event(70, "secret.updated", "acme"),  # only org admins (or system admins who are members)
    event(80, "membership.created", "globex", user="bob", role="admin"),  # bob's: never alice's
    event(85, "page.updated", "globex", public=True),
    event(89, "organization.updated", "acme"),
    event(90, "membership.deleted", "acme", user="alice"),
    event(91, "page.updated", "acme", public=True),
]
ORACLE = Oracle(POLICY_, LOG)


def observe(
    received: list[int], *, user: str | None = "alice", after: int = 0, until: int = 91, **kw: Any
) -> Observation:
    by_position = {entry.position: entry for entry in LOG}
    payloads = {position: payload(by_position[position]) for position in received if position in by_position}
    if 90 in payloads:  # a deletion recorded without a role carries the role held
        payloads[90] = payload(by_position[90], data={"userId": "alice", "organizationId": "acme", "role": "member"})
    return Observation("client", user, after, until, received, payloads | kw.pop("payloads", {}), **kw)


def test_the_temporal_membership_rule() -> None:
    assert ORACLE.expected("alice", "user", 0, 91) == [40, 41, 60, 61, 89, 90]
    assert ORACLE.expected("alice", "user", 45, 91) == [60, 61, 89, 90]
    assert ORACLE.expected("bob", "user", 0, 91) == [80, 85]
    assert ORACLE.expected("carol", "user", 0, 91) == []


def test_a_system_admin_reads_every_type_but_only_where_a_member() -> None:
    assert ORACLE.expected("alice", "admin", 0, 91) == [40, 41, 50, 60, 61, 70, 89, 90]
    assert ORACLE.expected("bob", "admin", 0, 91) == [80, 85]


def test_the_public_stream_gets_only_public_changes_of_public_types() -> None:
    assert ORACLE.expected(None, "user", 0, 91) == [85, 91]


def test_a_perfect_client_passes() -> None:
    verdict = ORACLE.check(observe([40, 41, 60, 61, 89, 90]))
    assert verdict.ok, verdict.summary()
    assert verdict.expected == 6


@pytest.mark.parametrize(
    ("received", "label", "found"),
    [
        ([40, 41, 61, 89, 90], "lost", [60]),
        ([40, 41, 41, 60, 61, 89, 90], "duplicated", [41]),
        ([40, 41, 50, 60, 61, 89, 90], "leaked", [50]),  # an attachment while a viewer
        ([40, 41, 60, 61, 89, 90, 91], "leaked", [91]),  # acme's after the revocation
        ([10, 40, 41, 60, 61, 89, 90], "leaked", [10]),  # acme's before the membership
        ([40, 41, 60, 61, 80, 89, 90], "leaked", [80]),  # bob's membership event
        ([40, 60, 41, 61, 89, 90], "out_of_order", [41]),
    ],
)
def test_every_kind_of_failure_is_seen(received: list[int], label: str, found: list[int]) -> None:
    verdict = ORACLE.check(observe(received))
    assert getattr(verdict, label) == found, verdict.summary()
    assert not verdict.ok


def test_events_outside_the_window_are_reported() -> None:
    verdict = ORACLE.check(observe([41, 60, 61, 89, 90], after=40))
    assert verdict.ok
    verdict = ORACLE.check(observe([40, 41, 60, 61, 89, 90], after=40))
    assert verdict.outside == [40]
    verdict = ORACLE.check(observe([40, 41, 60, 61], until=61))
    assert verdict.ok
    verdict = ORACLE.check(observe([40, 41, 60, 61, 89], until=61))
    assert verdict.outside == [89]


def test_a_changed_payload_is_corrupted() -> None:
    wrong = payload(LOG[2], data={"n": 999})
    verdict = ORACLE.check(observe([40, 41, 60, 61, 89, 90], payloads={41: wrong}))
    assert verdict.corrupted == [41]


def test_a_deletion_without_the_role_held_is_corrupted() -> None:
    bare = payload(LOG[10])  # `role: null`, as recorded
    verdict = ORACLE.check(observe([40, 41, 60, 61, 89, 90], payloads={90: bare}))
    assert verdict.corrupted == [90]


def test_the_log_must_be_in_order() -> None:
    with pytest.raises(ValueError, match="increasing"):
        Oracle(POLICY_, [LOG[1], LOG[0]])


def test_organization_deleted_is_final() -> None:
    """CONTRACT §2: the deletion reaches the members who may read it; from it on the organization has no
    members, and an event of it recorded later (which writers must refuse) is reported and reaches nobody."""
    log = [
        event(1, "membership.created", "acme", user="alice", role="member"),
        event(2, "page.updated", "acme", public=True),
        event(3, "organization.deleted", "acme"),
        LoggedEvent(4, "4", "tombstone.acme.0", b'{"organizationId": "acme"}', False),  # bookkeeping, not an event
        event(5, "page.updated", "acme", public=True),
        event(6, "membership.created", "acme", user="alice", role="admin"),
        event(7, "page.updated", "globex"),
    ]
    oracle = Oracle(POLICY_, log)
    assert oracle.expected("alice", "user", 0, 7) == [1, 2, 3]
    assert oracle.expected("alice", "user", 3, 7) == []
    assert oracle.expected(None, "user", 0, 7) == [2]
    assert oracle.after_deletion() == [5, 6]
    leaked = oracle.check(Observation("alice", "alice", 0, 7, [1, 2, 3, 5]))
    assert leaked.leaked == [5]
    assert ORACLE.after_deletion() == []
