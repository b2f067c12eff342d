"""Memberships as a projection of the log's membership events, with the history for as-of answers.

The projection holds, per user, the memberships in force after the last applied
event plus a changelog of what each event changed. Undoing the changelog entries
after a position P gives the memberships as they stood right after P, which is
what an edge needs when a client resumes at cursor P (CONTRACT §4: memberships
are taken as they stand at the event's position in the log).

Entries older than the log's first retained event are pruned: a client can no
longer resume there anyway. ``floor`` is the position from which the history is
complete; asking for an older position raises ``HistoryExpiredError``.

Deleted organizations (CONTRACT §2, ``organization.deleted`` is final) are
kept with the position of their deletion, forever: from that position on the
organization has no members, whatever the memberships held before (they stay
in the history, so an earlier position is still answered as it stood), and a
membership event of it positioned later changes nothing.

Pure and synchronous: the acl service feeds it in log order and snapshots it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Mapping
from typing import NamedTuple

import msgspec

from userstream.events.model import Action
from userstream.memberships import apply_membership_event


class HistoryExpiredError(LookupError):
    """The position is older than the history this projection keeps."""


class Change(NamedTuple):
    """What one event did to one membership: ``before`` → ``after`` (None = not a member)."""

    sequence: int
    organization_id: str
    before: str | None
    after: str | None


class UserRecord(msgspec.Struct, array_like=True):
    """One user's memberships now, the changes that led there, and the last event on their subject.

    A msgspec struct so that a snapshot encodes the projection as it is, without copying it first.
    """

    memberships: dict[str, str] = msgspec.field(default_factory=dict)
    changes: list[Change] = msgspec.field(default_factory=list)
    last_sequence: int = 0


_NO_MEMBERSHIPS: Mapping[str, str] = {}


class MembershipProjection:
    """Every user's memberships, as of the last applied position of one log.

    ``applied`` is the sequence of the last event applied (0 before any).
    ``floor``: memberships as of any position >= floor can be answered.
    """

    __slots__ = ("applied", "deleted", "floor", "log_id", "users")

    def __init__(self, log_id: int, *, applied: int = 0, floor: int = 0) -> None:
        self.log_id = log_id
        self.applied = applied
        self.floor = floor
        self.users: dict[str, UserRecord] = {}
        # organization → the position of its `organization.deleted`
        self.deleted: dict[str, int] = {}

    def apply(self, sequence: int, user_id: str, action: Action, organization_id: str, role: str | None) -> None:
        """Apply one membership event at ``sequence`` (strictly after ``applied``)."""
        self._check_order(sequence)
        record = self.users.get(user_id)
        if record is None:
            record = self.users[user_id] = UserRecord()
        # An event of a deleted organization changes nothing: writers refuse them (the log decides), and
        # one recorded before that rule existed must not bring the organization back.
        if organization_id not in self.deleted:
            before = apply_membership_event(record.memberships, action, organization_id, role)
            after = record.memberships.get(organization_id)
            if before != after:
                record.changes.append(Change(sequence, organization_id, before, after))
        record.last_sequence = sequence
        self.applied = sequence

    def delete_organization(self, sequence: int, organization_id: str, position: int) -> None:
        """Record that ``organization_id`` was deleted at ``position``, learnt at ``sequence`` (its tombstone).

        ``position`` <= ``sequence``: the tombstone is stored right after the deletion. A second deletion
        (impossible through the Recorder) keeps the first.
        """
        self._check_order(sequence)
        self.deleted.setdefault(organization_id, position)
        self.applied = sequence

    def is_deleted(self, organization_id: str) -> bool:
        return organization_id in self.deleted

    def advance(self, sequence: int) -> None:
        """Move past an event that changes no membership (e.g. an undecodable message on a user subject)."""
        self._check_order(sequence)
        self.applied = sequence

    def memberships(self, user_id: str) -> Mapping[str, str]:
        """The user's memberships now (organization → role). Read-only: do not mutate."""
        record = self.users.get(user_id)
        if record is None:
            return _NO_MEMBERSHIPS
        memberships = record.memberships
        deleted = self.deleted
        if deleted and any(organization_id in deleted for organization_id in memberships):
            return {org: role for org, role in memberships.items() if org not in deleted}
        return memberships

    def memberships_at(self, user_id: str, position: int) -> dict[str, str]:
        """The user's memberships right after ``position`` (any position >= ``floor``)."""
        if position < self.floor:
            raise HistoryExpiredError(f"history before position {self.floor} is no longer kept")
        record = self.users.get(user_id)
        if record is None:
            return {}
        memberships = self._undone_after(record, position)
        deleted = self.deleted
        if deleted:
            for organization_id in [org for org in memberships if deleted.get(org, position + 1) <= position]:
                del memberships[organization_id]
        return memberships

    def _undone_after(self, record: UserRecord, position: int) -> dict[str, str]:
        memberships = dict(record.memberships)
        changes = record.changes
        if position >= self.applied or not changes or changes[-1].sequence <= position:
            return memberships
        # Undo, newest first, every change made after `position`.
        first_undone = bisect_right(changes, position, key=_sequence_of)
        for change in reversed(changes[first_undone:]):
            if change.before is None:
                memberships.pop(change.organization_id, None)
            else:
                memberships[change.organization_id] = change.before
        return memberships

    def role_of(self, user_id: str, organization_id: str) -> str | None:
        record = self.users.get(user_id)
        if record is None or organization_id in self.deleted:
            return None
        return record.memberships.get(organization_id)

    def last_sequence_of(self, user_id: str) -> int:
        """The sequence of the last event applied on the user's subject (0: none retained)."""
        record = self.users.get(user_id)
        return 0 if record is None else record.last_sequence

    def prune(self, first_retained: int) -> int:
        """Forget history the log no longer holds (entries before ``first_retained``). Returns entries dropped."""
        horizon = first_retained - 1
        if horizon <= self.floor:
            return 0
        dropped = 0
        deleted = self.deleted
        for user_id in list(self.users):
            record = self.users[user_id]
            if deleted:
                # Memberships of organizations deleted before the horizon: nothing can ask for them anymore.
                for organization_id in [org for org in record.memberships if deleted.get(org, horizon + 1) <= horizon]:
                    del record.memberships[organization_id]
            keep_from = bisect_right(record.changes, horizon, key=_sequence_of)
            if keep_from:
                dropped += keep_from
                del record.changes[:keep_from]
            if not record.memberships and not record.changes and record.last_sequence <= horizon:
                # Nothing to answer and the log no longer holds their events: their subject is empty.
                del self.users[user_id]
        self.floor = horizon
        return dropped

    def reset(self, log_id: int, *, applied: int = 0) -> None:
        """Start over for another log (or after accepting a gap at ``applied``)."""
        self.log_id = log_id
        self.applied = applied
        self.floor = applied
        self.users.clear()
        self.deleted.clear()

    def __iter__(self) -> Iterator[tuple[str, UserRecord]]:
        return iter(self.users.items())

    def __len__(self) -> int:
        return len(self.users)

    def _check_order(self, sequence: int) -> None:
        if sequence <= self.applied:
            raise ValueError(f"event {sequence} is not after the last applied event {self.applied}")


def _sequence_of(change: Change) -> int:
    return change.sequence
