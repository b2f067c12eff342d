"""Snapshots of the membership projection, kept in a JetStream stream of their own.

A snapshot can outgrow one NATS message (1 MiB by default), so it is written
as chunks followed by a manifest that lists the chunks' sequences, the digest
and the log position the snapshot reflects. The manifest is written with an
expected-last-sequence condition, so among replicas writing at the same time
exactly one wins; the winner then purges every older chunk and manifest
(including chunks of writers that lost or crashed). A reader that finds a
chunk gone (purged by a newer snapshot meanwhile) reads the new manifest.

Any replica may write: the projection is deterministic, so the newest
position wins and an older one is never written over a newer one.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime

import msgspec
import nats.errors
import nats.js.errors
import structlog
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from userstream.acl.settings import AclTuning
from userstream.acl_state.projection import MembershipProjection
from userstream.acl_state.snapshot import (
    Snapshot,
    SnapshotError,
    compress_snapshot,
    decode_snapshot,
    serialize_snapshot,
)
from userstream.eventlog.subjects import EXPECTED_LAST_SUBJECT_SEQUENCE_HEADER, EXPECTED_STREAM_HEADER
from userstream.nats_connection import NatsConnection

log = structlog.get_logger("userstream.acl")

_WRONG_LAST_SEQUENCE = 10071
_NO_MESSAGE = 10037
_READ_ATTEMPTS = 3


class Manifest(msgspec.Struct, forbid_unknown_fields=False):
    log_id: int
    position: int
    size: int
    sha256: str
    chunks: list[int]
    written_at: str


_MANIFEST_DECODER = msgspec.json.Decoder(Manifest)


class SnapshotStore:
    def __init__(self, connection: NatsConnection, tuning: AclTuning, replicas: int) -> None:
        self._connection = connection
        self._stream = tuning.snapshot_stream
        self._chunk_subject = f"{tuning.snapshot_stream}.chunk"
        self._manifest_subject = f"{tuning.snapshot_stream}.manifest"
        self._chunk_bytes = tuning.snapshot_chunk_bytes
        self._replicas = replicas

    async def open(self) -> None:
        """Create the snapshot stream unless it exists. Raises nats errors (the caller retries)."""
        manager = self._connection.manager
        try:
            await manager.stream_info(self._stream)
        except nats.js.errors.NotFoundError:
            try:
                await manager.add_stream(
                    StreamConfig(
                        name=self._stream,
                        description="userstream acl: snapshots of the membership projection",
                        subjects=[self._chunk_subject, self._manifest_subject],
                        retention=RetentionPolicy.LIMITS,
                        storage=StorageType.FILE,
                        discard=DiscardPolicy.OLD,
                        num_replicas=self._replicas,
                    )
                )
                log.info("acl.snapshot_stream_created", stream=self._stream, replicas=self._replicas)
            except nats.js.errors.BadRequestError:
                pass  # another replica created it meanwhile

    async def load(self) -> Snapshot | None:
        """The newest snapshot, or None when there is none. Raises SnapshotError when it is unreadable."""
        for _ in range(_READ_ATTEMPTS):
            found = await self._manifest()
            if found is None:
                return None
            _, manifest = found
            data = await self._read_chunks(manifest)
            if data is None:
                continue  # replaced while we read it
            if len(data) != manifest.size or hashlib.sha256(data).hexdigest() != manifest.sha256:
                raise SnapshotError("the snapshot's chunks do not match its manifest")
            snapshot = await asyncio.to_thread(decode_snapshot, data)
            if snapshot.position != manifest.position or snapshot.projection.log_id != manifest.log_id:
                raise SnapshotError("the snapshot disagrees with its manifest")
            return snapshot
        raise SnapshotError(f"the snapshot kept changing while being read ({_READ_ATTEMPTS} attempts)")

    async def save(self, projection: MembershipProjection, position: int) -> bool:
        """Write a snapshot reflecting ``position`` unless one at least as new exists. True when written."""
        found = await self._manifest()
        manifest_sequence = 0
        if found is not None:
            manifest_sequence, current = found
            if current.log_id == projection.log_id and current.position >= position:
                return False
        # Events applied since the caller's barrier are in the projection too: it reflects the later position.
        position = max(position, projection.applied)
        # Serialized here (a consistent copy, ~0.2 s per million memberships), compressed off the loop.
        data = await asyncio.to_thread(compress_snapshot, serialize_snapshot(projection, position))
        js = self._connection.jetstream
        chunks: list[int] = []
        for offset in range(0, len(data), self._chunk_bytes):
            ack = await js.publish(
                self._chunk_subject,
                data[offset : offset + self._chunk_bytes],
                headers={EXPECTED_STREAM_HEADER: self._stream},
            )
            chunks.append(ack.seq)
        manifest = Manifest(
            log_id=projection.log_id,
            position=position,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            chunks=chunks,
            written_at=datetime.now(UTC).isoformat(),
        )
        try:
            await js.publish(
                self._manifest_subject,
                msgspec.json.encode(manifest),
                headers={
                    EXPECTED_STREAM_HEADER: self._stream,
                    EXPECTED_LAST_SUBJECT_SEQUENCE_HEADER: str(manifest_sequence),
                },
            )
        except nats.js.errors.APIError as exc:
            if exc.err_code == _WRONG_LAST_SEQUENCE:
                return False  # another replica wrote one meanwhile; our chunks go with its cleanup
            raise
        await self._purge_older(chunks[0] if chunks else None)
        log.info("acl.snapshot_written", position=position, bytes=len(data), chunks=len(chunks), users=len(projection))
        return True

    async def _purge_older(self, first_chunk: int | None) -> None:
        manager = self._connection.manager
        if first_chunk is not None:
            await manager.purge_stream(self._stream, subject=self._chunk_subject, seq=first_chunk)
        await manager.purge_stream(self._stream, subject=self._manifest_subject, keep=1)

    async def _manifest(self) -> tuple[int, Manifest] | None:
        raw = await self._get(subject=self._manifest_subject)
        if raw is None:
            return None
        sequence, data = raw
        try:
            return sequence, _MANIFEST_DECODER.decode(data)
        except msgspec.DecodeError as exc:
            raise SnapshotError(f"the snapshot manifest is unreadable: {exc}") from None

    async def _read_chunks(self, manifest: Manifest) -> bytes | None:
        parts: list[bytes] = []
        for sequence in manifest.chunks:
            raw = await self._get(sequence=sequence)
            if raw is None:
                return None
            parts.append(raw[1])
        return b"".join(parts)

    async def _get(self, *, subject: str | None = None, sequence: int | None = None) -> tuple[int, bytes] | None:
        """A message from the stream leader, by last-on-subject or by sequence; None when absent."""
        try:
            message = await self._connection.manager.get_msg(self._stream, seq=sequence, subject=subject)
        except nats.js.errors.NotFoundError:
            return None
        except nats.js.errors.APIError as exc:
            if exc.err_code == _NO_MESSAGE:
                return None
            raise
        if sequence is not None and message.subject != self._chunk_subject:
            return None
        return message.seq or 0, message.data or b""
