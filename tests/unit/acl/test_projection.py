"""The membership projection and its history, against a deliberately simple reference: replay the events."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from userstream.acl_state import (
    HistoryExpiredError,
    MembershipProjection,
    SnapshotError,
    UserRecord,
    decode_snapshot,
    encode_snapshot,
)
from userstream.acl_state.snapshot import FORMAT_VERSION
from userstream.events.model import Action

USERS = ["u1", "u2", "u3"]
ORGS = ["o1", "o2", "o3"]
ROLES = ["admin", "member"]


@dataclass(frozen=True)
class Event:
    """A membership event, or (``user_id`` empty) an ``organization.deleted`` with its tombstone right after."""

    sequence: int
    user_id: str
    action: Action
    organization_id: str
    role: str | None

    @property
    def is_deletion(self) -> bool:
        return not self.user_id


def reference_memberships(events: list[Event], user_id: str, position: int) -> dict[str, str]:
    """The obvious way: replay every event of the user up to ``position`` (CONTRACT §2's rules)."""
    memberships: dict[str, str] = {}
    deleted: set[str] = set()
    for event in events:
        if event.sequence > position:
            continue
        if event.is_deletion:
            deleted.add(event.organization_id)
            memberships.pop(event.organization_id, None)
            continue
        if event.user_id != user_id or event.organization_id in deleted:
            continue
        if event.action is Action.DELETE:
            memberships.pop(event.organization_id, None)
        else:
            assert event.role is not None
            memberships[event.organization_id] = event.role
    return memberships


def reference_last_sequence(events: list[Event], user_id: str, first_retained: int = 0) -> int:
    # Membership events of a deleted organization change nothing, but they are the subject's last event.
    return max((e.sequence for e in events if e.user_id == user_id and e.sequence >= first_retained), default=0)


@st.composite
def event_logs(draw: st.DrawFn) -> list[Event]:
    """Membership events at increasing sequences with gaps (other events sit in between in the log)."""
    count = draw(st.integers(0, 40))
    events: list[Event] = []
    sequence = 0
    for _ in range(count):
        sequence += draw(st.integers(1, 3))
        if draw(st.integers(0, 9)) == 0:
            events.append(Event(sequence, "", Action.DELETE, draw(st.sampled_from(ORGS)), None))
            sequence += 1  # its tombstone
            continue
        action = draw(st.sampled_from(list(Action)))
        role = None if action is Action.DELETE else draw(st.sampled_from(ROLES))
        events.append(Event(sequence, draw(st.sampled_from(USERS)), action, draw(st.sampled_from(ORGS)), role))
    return events


def project(events: list[Event]) -> MembershipProjection:
    projection = MembershipProjection(log_id=7)
    for event in events:
        if event.is_deletion:
            projection.delete_organization(event.sequence + 1, event.organization_id, event.sequence)
            continue
        projection.apply(event.sequence, event.user_id, event.action, event.organization_id, event.role)
    return projection


def assert_agrees(projection: MembershipProjection, events: list[Event], floor: int) -> None:
    last = events[-1].sequence + events[-1].is_deletion if events else 0
    # Every position where an answer can change, and its neighbours: the rest answer like one of them.
    positions = {floor, last + 1, last + 2} | {p for e in events for p in (e.sequence - 1, e.sequence)}
    for user_id in [*USERS, "nobody"]:
        current = reference_memberships(events, user_id, last)
        assert dict(projection.memberships(user_id)) == current
        for position in sorted(p for p in positions if p >= floor):
            assert projection.memberships_at(user_id, position) == reference_memberships(events, user_id, position)
        for organization_id in ORGS:
            assert projection.role_of(user_id, organization_id) == current.get(organization_id)


@settings(max_examples=60)
@given(event_logs())
def test_state_at_every_position_matches_replay(events: list[Event]) -> None:
    projection = project(events)
    assert projection.applied == (events[-1].sequence + events[-1].is_deletion if events else 0)
    assert_agrees(projection, events, floor=0)
    for user_id in USERS:
        assert projection.last_sequence_of(user_id) == reference_last_sequence(events, user_id)


@settings(max_examples=60)
@given(event_logs(), st.integers(0, 130))
def test_pruning_keeps_every_answer_from_the_floor_on(events: list[Event], first_retained: int) -> None:
    projection = project(events)
    projection.prune(first_retained)
    floor = max(first_retained - 1, 0)
    assert projection.floor == floor
    assert_agrees(projection, events, floor=floor)
    if floor > 0:
        with pytest.raises(HistoryExpiredError):
            projection.memberships_at("u1", floor - 1)
    for user_id in USERS:
        # A user whose every event is purged has an empty subject in the log too (last sequence 0).
        last = projection.last_sequence_of(user_id)
        assert last in (0, reference_last_sequence(events, user_id))
        if reference_memberships(events, user_id, 10**6) or reference_last_sequence(events, user_id, first_retained):
            assert last == reference_last_sequence(events, user_id)


@settings(max_examples=40)
@given(event_logs(), st.integers(0, 130), st.integers(0, 5))
def test_snapshot_round_trip_answers_the_same(events: list[Event], first_retained: int, beyond: int) -> None:
    projection = project(events)
    projection.prune(first_retained)
    # The service never prunes beyond the position it confirmed; a snapshot is at or after both.
    position = max(projection.applied, projection.floor) + beyond
    snapshot = decode_snapshot(encode_snapshot(projection, position))
    assert snapshot.position == position
    restored = snapshot.projection
    assert (restored.log_id, restored.applied, restored.floor) == (7, projection.applied, projection.floor)
    assert_agrees(restored, events, floor=projection.floor)
    for user_id in USERS:
        assert restored.last_sequence_of(user_id) == projection.last_sequence_of(user_id)


def test_events_must_come_in_order() -> None:
    projection = MembershipProjection(log_id=1)
    projection.apply(5, "u1", Action.CREATE, "o1", "member")
    with pytest.raises(ValueError, match="not after"):
        projection.apply(5, "u1", Action.CREATE, "o1", "member")
    with pytest.raises(ValueError, match="not after"):
        projection.advance(3)


def test_advance_moves_past_events_without_changes() -> None:
    projection = MembershipProjection(log_id=1)
    projection.apply(1, "u1", Action.CREATE, "o1", "member")
    projection.advance(4)
    assert projection.applied == 4
    assert projection.memberships_at("u1", 0) == {}
    assert projection.memberships_at("u1", 3) == {"o1": "member"}


def test_idempotent_events_leave_no_history() -> None:
    projection = MembershipProjection(log_id=1)
    projection.apply(1, "u1", Action.CREATE, "o1", "member")
    projection.apply(2, "u1", Action.CREATE, "o1", "member")
    projection.apply(3, "u1", Action.DELETE, "o2", None)
    assert [change.sequence for change in projection.users["u1"].changes] == [1]
    assert projection.last_sequence_of("u1") == 3


def test_reset_starts_over_for_another_log() -> None:
    projection = MembershipProjection(log_id=1)
    projection.apply(1, "u1", Action.CREATE, "o1", "member")
    projection.reset(2)
    assert (projection.log_id, projection.applied, len(projection)) == (2, 0, 0)


@pytest.mark.parametrize("data", [b"", b"not zlib", b"x\x9c\x03\x00\x00\x00\x00\x01"])
def test_garbage_is_not_a_snapshot(data: bytes) -> None:
    with pytest.raises(SnapshotError):
        decode_snapshot(data)


def test_snapshot_cannot_claim_a_position_before_its_events() -> None:
    projection = MembershipProjection(log_id=1)
    projection.apply(4, "u1", Action.CREATE, "o1", "member")
    with pytest.raises(ValueError, match="before the last applied"):
        encode_snapshot(projection, 3)


def test_a_deleted_organization_has_no_members_from_its_deletion_on() -> None:
    projection = MembershipProjection(log_id=7)
    projection.apply(1, "u1", Action.CREATE, "o1", "admin")
    projection.apply(2, "u1", Action.CREATE, "o2", "member")
    projection.delete_organization(4, "o1", 3)
    projection.apply(5, "u1", Action.CREATE, "o1", "member")  # recorded before writers refused it: no effect
    assert dict(projection.memberships("u1")) == {"o2": "member"}
    assert projection.memberships_at("u1", 2) == {"o1": "admin", "o2": "member"}
    assert projection.memberships_at("u1", 3) == {"o2": "member"}
    assert projection.role_of("u1", "o1") is None
    assert projection.is_deleted("o1")
    assert projection.last_sequence_of("u1") == 5
    restored = decode_snapshot(encode_snapshot(projection, 5)).projection
    assert restored.deleted == {"o1": 3}
    assert dict(restored.memberships("u1")) == {"o2": "member"}


def test_a_snapshot_from_before_deletions_were_recorded_still_loads() -> None:
    users = {"u1": UserRecord(memberships={"o1": "admin"}, last_sequence=4)}
    old = msgspec.msgpack.encode([FORMAT_VERSION, 7, 9, 4, 0, users])  # no `deleted` field
    restored = decode_snapshot(zlib.compress(old))
    assert restored.position == 9
    assert restored.projection.deleted == {}
    assert dict(restored.projection.memberships("u1")) == {"o1": "admin"}
