"""What acl answers, as the domain sees it: a user's subject and a membership change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from userstream.errors import FailedPreconditionError

CursorRefusal = Literal["cursor-expired", "cursor-unknown"]
CURSOR_EXPIRED: CursorRefusal = "cursor-expired"
CURSOR_UNKNOWN: CursorRefusal = "cursor-unknown"


@dataclass(frozen=True, slots=True)
class Subject:
    """A user's system role and memberships (organization → role) as of ``cursor``."""

    user_id: str
    system_role: str
    memberships: dict[str, str]
    cursor: str


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """A recorded membership event: ``role`` is the new role, or for a revocation the role the member had."""

    user_id: str
    organization_id: str
    role: str
    cursor: str


class CursorRefusedError(FailedPreconditionError):
    """``at_cursor`` names a position acl cannot answer for; the client must refetch (CONTRACT §5 must-refetch).

    ``reason`` is ``cursor-expired`` (older than the history kept) or
    ``cursor-unknown`` (another log, or ahead of its head). The message starts
    with the reason, so it survives the trip through a gRPC status.
    """

    def __init__(self, reason: CursorRefusal, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: CursorRefusal = reason
        self.detail = detail

    @classmethod
    def from_message(cls, message: str) -> CursorRefusedError | None:
        """The error a FAILED_PRECONDITION message describes, if it is a cursor refusal."""
        reason, separator, detail = message.partition(": ")
        if separator and reason == CURSOR_EXPIRED:
            return cls(CURSOR_EXPIRED, detail)
        if separator and reason == CURSOR_UNKNOWN:
            return cls(CURSOR_UNKNOWN, detail)
        return None
