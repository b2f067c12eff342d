"""acl's state, as pure logic: memberships projected from the log, their history, snapshots, answers."""

from userstream.acl_state.projection import Change, HistoryExpiredError, MembershipProjection, UserRecord
from userstream.acl_state.snapshot import Snapshot, SnapshotError, decode_snapshot, encode_snapshot
from userstream.acl_state.subject import (
    CURSOR_EXPIRED,
    CURSOR_UNKNOWN,
    CursorRefusal,
    CursorRefusedError,
    MembershipChange,
    Subject,
)

__all__ = [
    "CURSOR_EXPIRED",
    "CURSOR_UNKNOWN",
    "Change",
    "CursorRefusal",
    "CursorRefusedError",
    "HistoryExpiredError",
    "MembershipChange",
    "MembershipProjection",
    "Snapshot",
    "SnapshotError",
    "Subject",
    "UserRecord",
    "decode_snapshot",
    "encode_snapshot",
]
