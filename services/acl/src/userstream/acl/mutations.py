"""Grant, update and revoke memberships: membership events recorded through the one write path.

A change is checked against this replica's state (ALREADY_EXISTS / NOT_FOUND),
validated like any activity (``validate_activity``) and recorded by the log's
``Recorder`` on condition that the member's subject still ends at the last
event this replica applied there (``Nats-Expected-Last-Subject-Sequence``).
So concurrent changes from several replicas are linearised by JetStream: the
loser refreshes (learns the subject's last sequence from the stream leader and
waits until it has applied it), checks again and retries, a bounded number of
times. An organization deleted (``organization.deleted`` is final) refuses every
change with ``OrganizationDeletedError`` (FAILED_PRECONDITION): known here, or
decided by the log through the Recorder's condition on the organization's
tombstone. The call returns only once this replica has applied its own event, so
GetSubject on this replica reflects it (read-your-writes).

Changes of one user on one replica are serialised by a lock, so they do not
race each other needlessly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from userstream.acl._validation import require_id, require_role
from userstream.acl.follower import MembershipFollower
from userstream.acl.readiness import Readiness
from userstream.acl_state import MembershipChange
from userstream.errors import AlreadyExistsError, NotFoundError, OrganizationDeletedError, UnavailableError
from userstream.eventlog.log import EventLog
from userstream.eventlog.reader import LogReader
from userstream.eventlog.recorder import ConcurrentChangeError
from userstream.eventlog.subjects import user_subject
from userstream.events.model import Action, ActivityInput
from userstream.events.validation import Limits, validate_activity
from userstream.policy import Policy

log = structlog.get_logger("userstream.acl")

_TYPES = {Action.CREATE: "membership.created", Action.UPDATE: "membership.updated", Action.DELETE: "membership.deleted"}


class MembershipMutations:
    def __init__(
        self,
        *,
        log_: EventLog,
        follower: MembershipFollower,
        reader: LogReader,
        readiness: Readiness,
        policy: Policy,
        limits: Limits,
        attempts: int,
    ) -> None:
        self._log = log_
        self._follower = follower
        self._reader = reader
        self._readiness = readiness
        self._policy = policy
        self._limits = limits
        self._attempts = attempts
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def grant(self, user_id: str, organization_id: str, role: str) -> MembershipChange:
        self._check_ids(user_id, organization_id)
        require_role(self._policy, role)
        return await self._change(Action.CREATE, user_id, organization_id, role)

    async def update(self, user_id: str, organization_id: str, role: str) -> MembershipChange:
        self._check_ids(user_id, organization_id)
        require_role(self._policy, role)
        return await self._change(Action.UPDATE, user_id, organization_id, role)

    async def revoke(self, user_id: str, organization_id: str) -> MembershipChange:
        self._check_ids(user_id, organization_id)
        return await self._change(Action.DELETE, user_id, organization_id, None)

    @staticmethod
    def _check_ids(user_id: str, organization_id: str) -> None:
        require_id(user_id, "user_id")
        require_id(organization_id, "organization_id")

    async def _change(self, action: Action, user_id: str, organization_id: str, role: str | None) -> MembershipChange:
        self._readiness.require()
        with self._user_lock(user_id) as lock:
            async with lock:
                return await self._change_locked(action, user_id, organization_id, role)

    async def _change_locked(
        self, action: Action, user_id: str, organization_id: str, role: str | None
    ) -> MembershipChange:
        projection = self._follower.projection
        expected = projection.last_sequence_of(user_id)
        for attempt in range(1, self._attempts + 1):
            if projection.is_deleted(organization_id) or organization_id in self._log.deleted:
                # Before ALREADY_EXISTS / NOT_FOUND: in a deleted organization every change is refused alike.
                raise OrganizationDeletedError(organization_id)
            current = projection.role_of(user_id, organization_id)
            recorded_role = self._check_state(action, user_id, organization_id, current, role)
            activity = validate_activity(
                ActivityInput(
                    type=_TYPES[action], user_id=user_id, organization_id=organization_id, role=recorded_role or ""
                ),
                self._policy,
                self._limits,
            )
            try:
                (recorded,) = await self._log.recorder().record([activity], expected_last_subject_sequence=expected)
            except ConcurrentChangeError:
                log.info("acl.mutation_conflict", user_id=user_id, attempt=attempt, expected=expected)
                expected = await self._refresh(user_id)
                continue
            await self._follower.wait_applied(recorded.cursor.sequence)
            return MembershipChange(user_id, organization_id, role or current or "", str(recorded.cursor))
        raise UnavailableError(
            f"the memberships of {user_id!r} kept changing concurrently; gave up after {self._attempts} attempts"
        )

    def _check_state(
        self, action: Action, user_id: str, organization_id: str, current: str | None, role: str | None
    ) -> str | None:
        """The role the event records (for a revocation, the role held), or the error the change meets."""
        if action is Action.CREATE:
            if current is not None:
                raise AlreadyExistsError(f"{user_id!r} is already a member of {organization_id!r} (role {current!r})")
            return role
        if current is None:
            raise NotFoundError(f"{user_id!r} is not a member of {organization_id!r}")
        if action is Action.UPDATE:
            return role
        # A role the policy no longer knows cannot be recorded; the event then carries none.
        return current if self._policy.knows_role(current) else None

    async def _refresh(self, user_id: str) -> int:
        """The subject's last sequence per the stream leader (0 once retention emptied it), applied here."""
        last = await self._reader.last_sequence(user_subject(user_id))
        await self._follower.wait_applied(last)
        return last

    @contextmanager
    def _user_lock(self, user_id: str) -> Iterator[asyncio.Lock]:
        lock, users = self._locks.get(user_id) or (asyncio.Lock(), 0)
        self._locks[user_id] = (lock, users + 1)
        try:
            yield lock
        finally:
            lock, users = self._locks[user_id]
            if users == 1:
                del self._locks[user_id]
            else:
                self._locks[user_id] = (lock, users - 1)
