"""The projection as bytes: what acl persists so that a restart need not replay the whole log.

A snapshot records the projection (memberships, changelog, last sequence per
user) and the log position it reflects: every membership event at or before
``position`` is in it and none after. Encoded with msgpack in compact arrays and
compressed; decoding validates the shape, so a corrupt snapshot is refused
rather than half-loaded.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import msgspec

from userstream.acl_state.projection import Change, MembershipProjection, UserRecord

FORMAT_VERSION = 1
_COMPRESSION_LEVEL = 3


class SnapshotError(ValueError):
    """The bytes are not a snapshot this version can load."""


class _User(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    user_id: str
    last_sequence: int
    memberships: dict[str, str]
    # Each change as a tuple of sequence, organization id, role before and role after.
    changes: list[tuple[int, str, str | None, str | None]]


class _Body(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    version: int
    log_id: int
    position: int
    applied: int
    floor: int
    users: list[_User]


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_Body)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A decoded snapshot: the projection and the position it reflects (>= ``projection.applied``)."""

    projection: MembershipProjection
    position: int


def encode_snapshot(projection: MembershipProjection, position: int) -> bytes:
    """Serialize ``projection`` as reflecting every event up to ``position``. Synchronous: a consistent copy."""
    if position < max(projection.applied, projection.floor):
        raise ValueError(
            f"position {position} is before the last applied event {projection.applied} or the history's floor"
        )
    users = [
        _User(
            user_id,
            record.last_sequence,
            record.memberships,
            [(c.sequence, c.organization_id, c.before, c.after) for c in record.changes],
        )
        for user_id, record in projection
    ]
    body = _Body(FORMAT_VERSION, projection.log_id, position, projection.applied, projection.floor, users)
    return zlib.compress(_ENCODER.encode(body), _COMPRESSION_LEVEL)


def decode_snapshot(data: bytes) -> Snapshot:
    """The projection a snapshot holds. Raises SnapshotError when the bytes are not a valid snapshot."""
    try:
        body = _DECODER.decode(zlib.decompress(data))
    except (zlib.error, msgspec.DecodeError) as exc:
        raise SnapshotError(f"not a readable acl snapshot: {exc}") from None
    if body.version != FORMAT_VERSION:
        raise SnapshotError(f"snapshot format {body.version} is not {FORMAT_VERSION}")
    if not (0 <= body.floor <= body.position and 0 <= body.applied <= body.position):
        raise SnapshotError("snapshot positions are inconsistent")
    projection = MembershipProjection(body.log_id, applied=body.applied, floor=body.floor)
    for user in body.users:
        changes = [Change(*entry) for entry in user.changes]
        projection.users[user.user_id] = UserRecord(dict(user.memberships), changes, user.last_sequence)
    return Snapshot(projection, body.position)
