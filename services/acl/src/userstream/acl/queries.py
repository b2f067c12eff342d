"""GetSubject and CheckAccess: answers from memory, at the position the caller asks for.

``at_cursor`` of GetSubject (the proto's extension):

- ``""``: the latest state applied; ``cursor`` is the position it reflects. No I/O.
- ``"now"``: a barrier, then the state at the log's head L; ``cursor`` is L.
- a cursor P: the memberships as they stood right after P; ``cursor`` is P.
  Malformed → INVALID_ARGUMENT ``at_cursor``. Another log, or ahead of the
  head → FAILED_PRECONDITION ``cursor-unknown: …``; older than the history kept
  → FAILED_PRECONDITION ``cursor-expired: …`` (the edge answers must-refetch).
  A barrier runs only when P is beyond what this replica has confirmed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from userstream.acl._validation import require_id
from userstream.acl.follower import MembershipFollower
from userstream.acl.readiness import Readiness
from userstream.acl.system_roles import SystemRoles
from userstream.acl_state import CURSOR_EXPIRED, CURSOR_UNKNOWN, CursorRefusedError, HistoryExpiredError, Subject
from userstream.cursor import CursorError, parse_cursor
from userstream.errors import InvalidArgumentError
from userstream.eventlog.log import EventLog
from userstream.permissions import READ, may_read_entity
from userstream.policy import Policy

NOW = "now"
LATEST = ""


class AccessItem(Protocol):
    """One CheckAccess question (the generated message and plain objects alike)."""

    @property
    def entity_type(self) -> str: ...
    @property
    def organization_id(self) -> str: ...
    @property
    def action(self) -> str: ...


class SubjectQueries:
    def __init__(
        self,
        *,
        log: EventLog,
        follower: MembershipFollower,
        roles: SystemRoles,
        readiness: Readiness,
        policy: Policy,
        max_items: int,
    ) -> None:
        self._log = log
        self._follower = follower
        self._roles = roles
        self._readiness = readiness
        self._policy = policy
        self._max_items = max_items

    async def get_subject(self, user_id: str, at_cursor: str) -> Subject:
        require_id(user_id, "user_id")
        if at_cursor == LATEST:
            self._readiness.require()
            return self._subject(user_id, dict(self._follower.projection.memberships(user_id)), self._follower.position)
        if at_cursor == NOW:
            self._readiness.require()
            head = (await self._follower.confirm()).last_sequence
            return self._at(user_id, head)
        position = self._position_of(at_cursor)
        self._readiness.require()
        if position > self._follower.position:
            head = (await self._follower.confirm()).last_sequence
            if position > head:
                raise CursorRefusedError(CURSOR_UNKNOWN, f"position {position} is ahead of the log's head {head}")
        return self._at(user_id, position)

    async def get_subjects(self, requests: Sequence[tuple[str, str]]) -> list[Subject | CursorRefusedError]:
        """``get_subject`` for each (user id, at_cursor), in order; a refused cursor is that item's answer.

        Every item is validated first (INVALID_ARGUMENT names ``requests[i]``); the
        items share the log barrier that ``now`` and new cursors need.
        """
        if len(requests) > self._max_items:
            raise InvalidArgumentError("requests", f"holds {len(requests)} items; at most {self._max_items}")
        for index, (user_id, at_cursor) in enumerate(requests):
            try:
                require_id(user_id, "user_id")
                if at_cursor not in (LATEST, NOW):
                    self._position_of(at_cursor)
            except InvalidArgumentError as error:
                raise error.within(f"requests[{index}]") from None
            except CursorRefusedError:
                pass  # answered per item below
        answers = await asyncio.gather(
            *(self.get_subject(user_id, at_cursor) for user_id, at_cursor in requests), return_exceptions=True
        )
        results: list[Subject | CursorRefusedError] = []
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, CursorRefusedError):
                raise answer
            results.append(answer)
        return results

    def check_access(self, user_id: str, items: Sequence[AccessItem]) -> list[bool]:
        """One answer per item, from the latest state (CONTRACT §4 via ``userstream.permissions``)."""
        require_id(user_id, "user_id")
        if len(items) > self._max_items:
            raise InvalidArgumentError("items", f"holds {len(items)} items; at most {self._max_items}")
        policy = self._policy
        for index, item in enumerate(items):
            _check_item(policy, item, index)
        self._readiness.require()
        memberships = self._follower.projection.memberships(user_id)
        system_role = self._roles.role_of(user_id)
        return [
            may_read_entity(policy, system_role, memberships.get(item.organization_id), item.entity_type)
            for item in items
        ]

    def _at(self, user_id: str, position: int) -> Subject:
        try:
            memberships = self._follower.projection.memberships_at(user_id, position)
        except HistoryExpiredError as exc:
            raise CursorRefusedError(CURSOR_EXPIRED, f"position {position}: {exc}") from None
        return self._subject(user_id, memberships, position)

    def _subject(self, user_id: str, memberships: dict[str, str], position: int) -> Subject:
        return Subject(user_id, self._roles.role_of(user_id), memberships, self._log.codec.encode(position))

    def _position_of(self, text: str) -> int:
        try:
            cursor = parse_cursor(text)
        except CursorError as exc:
            raise InvalidArgumentError("at_cursor", f"must be empty, `now` or a cursor: {exc}") from None
        log_id = self._log.codec.log_id
        if cursor.log_id not in (0, log_id):
            raise CursorRefusedError(CURSOR_UNKNOWN, "the cursor belongs to another log (it was recreated)")
        return cursor.sequence


def _check_item(policy: Policy, item: AccessItem, index: int) -> None:
    if item.action != READ:
        raise InvalidArgumentError(f"items[{index}].action", f"{item.action!r} is not known; only `read` is")
    if policy.rule(item.entity_type) is None:
        raise InvalidArgumentError(f"items[{index}].entity_type", f"{item.entity_type!r} is not declared in the policy")
    require_id(item.organization_id, f"items[{index}].organization_id")
