"""The projection as bytes: what acl persists so that a restart need not replay the whole log.

A snapshot records the projection (memberships, changelog, last sequence per
user, deleted organizations) and the log position it reflects: every membership event at or before
``position`` is in it and none after. Encoding is two steps so that the
service can keep its event loop responsive: ``serialize_snapshot`` copies the
projection to msgpack (synchronous, so the copy is consistent; ~0.2 s per
million memberships), ``compress_snapshot`` compresses it (pure, may run in a
thread). Decoding validates the shape, so a corrupt snapshot is refused rather
than half-loaded.
"""

from __future__ import annotations

import gc
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import msgspec

from userstream.acl_state.projection import MembershipProjection, UserRecord

FORMAT_VERSION = 2
_COMPRESSION_LEVEL = 1


class SnapshotError(ValueError):
    """The bytes are not a snapshot this version can load."""


class _Body(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    version: int
    log_id: int
    position: int
    applied: int
    floor: int
    users: dict[str, UserRecord]
    # Deleted organizations and their deletion's position; absent from snapshots older than that rule.
    deleted: dict[str, int] = msgspec.field(default_factory=dict)


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_Body)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A decoded snapshot: the projection and the position it reflects (>= ``projection.applied``)."""

    projection: MembershipProjection
    position: int


def serialize_snapshot(projection: MembershipProjection, position: int) -> bytes:
    """The projection, as reflecting every event up to ``position``, in msgpack (uncompressed)."""
    if position < max(projection.applied, projection.floor):
        raise ValueError(
            f"position {position} is before the last applied event {projection.applied} or the history's floor"
        )
    body = _Body(
        FORMAT_VERSION,
        projection.log_id,
        position,
        projection.applied,
        projection.floor,
        projection.users,
        projection.deleted,
    )
    return _ENCODER.encode(body)


def compress_snapshot(serialized: bytes) -> bytes:
    return zlib.compress(serialized, _COMPRESSION_LEVEL)


def encode_snapshot(projection: MembershipProjection, position: int) -> bytes:
    """Serialize and compress in one step (for callers that need not keep a loop responsive)."""
    return compress_snapshot(serialize_snapshot(projection, position))


def decode_snapshot(data: bytes) -> Snapshot:
    """The projection a snapshot holds. Raises SnapshotError when the bytes are not a valid snapshot."""
    try:
        with _collector_paused():
            body = _DECODER.decode(zlib.decompress(data))
    except (zlib.error, msgspec.DecodeError) as exc:
        raise SnapshotError(f"not a readable acl snapshot: {exc}") from None
    if body.version != FORMAT_VERSION:
        raise SnapshotError(f"snapshot format {body.version} is not {FORMAT_VERSION}")
    if not (0 <= body.floor <= body.position and 0 <= body.applied <= body.position):
        raise SnapshotError("snapshot positions are inconsistent")
    projection = MembershipProjection(body.log_id, applied=body.applied, floor=body.floor)
    projection.users = body.users
    projection.deleted = body.deleted
    return Snapshot(projection, body.position)


@contextmanager
def _collector_paused() -> Iterator[None]:
    # Decoding creates millions of acyclic objects; the cyclic collector would rescan them over and
    # over (three times slower overall). Reference counting still frees everything as usual.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
