"""The one publishing path: validated activities into the log, in order, idempotently.

Both the activity service and acl's membership mutations record through here
(and so does every other writer), so the rule that ``organization.deleted`` is
final (``userstream.eventlog.deletions``) holds for all of them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.js.api import RawStreamMsg

from userstream.cursor import Cursor, CursorCodec
from userstream.errors import FailedPreconditionError, OrganizationDeletedError, UnavailableError, UserstreamError
from userstream.eventlog._acks import AckInbox, PubAck
from userstream.eventlog._org_locks import OrganizationLocks
from userstream.eventlog.deletions import (
    LANES,
    WRITE_LANES,
    DeletedOrganizations,
    is_deletion,
    refuse_later_events,
    still_open_condition,
)
from userstream.eventlog.subjects import (
    BATCH_COMMIT_HEADER,
    BATCH_ID_HEADER,
    BATCH_SEQUENCE_HEADER,
    EXPECTED_LAST_SUBJECT_SEQUENCE_HEADER,
    EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT_HEADER,
    EXPECTED_STREAM_HEADER,
    MSG_ID_HEADER,
    PUBLIC_HEADER,
    fence_subject,
    subject_of,
    tombstone_subject,
)
from userstream.events.model import Activity
from userstream.events.wire import encode_body
from userstream.nats_connection import NatsConnection

log = structlog.get_logger("userstream.eventlog")

# JetStream's error code for a failed Nats-Expected-Last-Subject-Sequence check.
_WRONG_LAST_SEQUENCE = 10071
# ... and for an atomic batch holding a Nats-Msg-Id seen within the duplicate window.
_DUPLICATE_IN_ATOMIC_BATCH = 10201
# A clustered stream's leader refuses a conditional write, without comparing, while another one checked
# against the same subject is still being replicated (see ``_org_locks``).
_NOT_READY = 10164
# Waits between attempts of a write refused as not ready: another process's write is being replicated.
_NOT_READY_FIRST_WAIT = 0.001
_NOT_READY_MAX_WAIT = 0.05
# Organizations whose next lane is remembered (serialized streams); forgotten all at once beyond this.
_MAX_TRACKED_LANES = 65_536

Message = tuple[str, bytes, dict[str, str]]


class ConcurrentChangeError(UserstreamError):
    """Another event landed on the subject since the sequence the caller expected."""


@dataclass(frozen=True, slots=True)
class Recorded:
    cursor: Cursor
    duplicate: bool


class Recorder:
    """Publishes activities to the ``ACTIVITY`` stream and returns their cursors.

    A batch is checked and encoded first (so nothing is sent if one item cannot
    be), then published pipelined — every message written before any
    acknowledgement is awaited — which keeps the request's order in the log. If
    NATS does not acknowledge within ``timeout`` the call fails with
    ``UnavailableError``: some items may have been recorded, and retrying with
    the same idempotency keys is safe.

    ``organization.deleted`` is final (``userstream.eventlog.deletions``): every
    message is conditional on its organization having no tombstone, and a
    deletion is stored atomically with the tombstone. A batch with a deletion is
    recorded in order, in segments: what precedes it, the deletion, what follows.

    On a clustered stream (``serialized``, or learnt from the first refusal as
    not ready) JetStream replicates one conditional write per organization at a
    time: the recorder then holds the request's organizations' locks, publishes
    the batch in waves in which each organization appears once (pipelined
    within a wave, waves in order), and retries a write refused as not ready
    (one from another process being replicated) until ``timeout``.
    """

    def __init__(
        self,
        connection: NatsConnection,
        stream: str,
        codec: CursorCodec,
        timeout: float,
        *,
        acks: AckInbox | None = None,
        deleted: DeletedOrganizations | None = None,
        serialized: bool = False,
        lanes: tuple[int, ...] = WRITE_LANES,
    ) -> None:
        self._connection = connection
        self._stream = stream
        self._codec = codec
        self._timeout = timeout
        self._acks = acks
        self.deleted = deleted if deleted is not None else DeletedOrganizations()
        self.serialized = serialized
        self._lanes = lanes
        self._next_lane: dict[str, int] = {}
        self._locks = OrganizationLocks()
        self._batch_ids = itertools.count()
        self._batch_prefix = os.urandom(6).hex()

    def for_log(self, codec: CursorCodec) -> Recorder:
        """The same recorder (and acknowledgement inbox) for a reopened log."""
        recorder = Recorder(
            self._connection,
            self._stream,
            codec,
            self._timeout,
            acks=self._acks,
            deleted=self.deleted,
            serialized=self.serialized,
            lanes=self._lanes,
        )
        recorder._locks = self._locks  # writes in flight on the old log still hold them
        return recorder

    async def record(
        self, activities: Sequence[Activity], *, expected_last_subject_sequence: int | None = None
    ) -> list[Recorded]:
        """Record ``activities`` in order.

        ``expected_last_subject_sequence`` (single activity only) makes the write
        conditional: it fails with ``ConcurrentChangeError`` if the subject's last
        sequence is not that value (optimistic concurrency for acl).
        An event of a deleted organization fails with ``OrganizationDeletedError``.
        """
        if expected_last_subject_sequence is not None and len(activities) != 1:
            raise ValueError("a conditional write records exactly one activity")
        with_deletion = refuse_later_events(activities, self.deleted)
        if not self._connection.connected:
            raise UnavailableError("NATS is not connected")
        if not self.serialized:
            return await self._record_in_order(activities, expected_last_subject_sequence, with_deletion)
        async with self._locks.holding(activity.organization_id for activity in activities):
            return await self._record_in_order(activities, expected_last_subject_sequence, with_deletion)

    async def _record_in_order(
        self, activities: Sequence[Activity], expected: int | None, with_deletion: bool
    ) -> list[Recorded]:
        if expected is not None:
            (activity,) = activities
            return [await self._record_fenced(activity, expected)]
        if not with_deletion:
            return await self._record_pipelined(activities)
        # A deletion of an organization known to be deleted is let through only as the retry of that very
        # deletion (same idempotency key): settle which, before anything of the batch is sent.
        retried = {
            index: await self._earlier_deletion(activity)
            for index, activity in enumerate(activities)
            if is_deletion(activity) and activity.organization_id in self.deleted
        }
        results: list[Recorded] = []
        segment: list[Activity] = []
        for index, activity in enumerate(activities):
            if is_deletion(activity):
                if segment:
                    results += await self._record_pipelined(segment)
                    segment = []
                earlier = retried.get(index)
                results.append(earlier if earlier is not None else await self._record_deletion(activity))
            else:
                segment.append(activity)
        if segment:
            results += await self._record_pipelined(segment)
        return results

    async def _record_pipelined(self, activities: Sequence[Activity]) -> list[Recorded]:
        messages = [
            (subject_of(activity), encode_body(activity), self._headers(activity, still_open=True))
            for activity in activities
        ]
        acks: list[PubAck] = []
        for start, end in self._waves(activities):
            wave = messages[start:end]
            acks += await self._retried_while_not_ready(wave, await self._publish(wave))
            if any(_refused(ack) for ack in acks):
                break  # a deletion raced this batch: nothing after the refusal is sent
        activities = activities[: len(acks)]
        refused = [activity.organization_id for activity, ack in zip(activities, acks, strict=True) if _refused(ack)]
        if refused:
            # Only a deletion racing this very batch gets here (a known one is refused before sending).
            for organization_id in refused:
                self.deleted.add(organization_id)
            raise OrganizationDeletedError(refused[0])
        return [self._recorded(ack) for ack in acks]

    def _waves(self, activities: Sequence[Activity]) -> list[tuple[int, int]]:
        """Index ranges published together: all at once, or (serialized) runs in which no organization repeats."""
        if not self.serialized:
            return [(0, len(activities))]
        waves: list[tuple[int, int]] = []
        start = 0
        seen: set[str] = set()
        for index, activity in enumerate(activities):
            if activity.organization_id in seen:
                waves.append((start, index))
                start, seen = index, set()
            seen.add(activity.organization_id)
        waves.append((start, len(activities)))
        return waves

    async def _retried_while_not_ready(self, messages: Sequence[Message], acks: list[PubAck]) -> list[PubAck]:
        """Publish again, one by one in order, the messages refused as not ready (until ``timeout``)."""
        pending = [index for index, ack in enumerate(acks) if _not_ready(ack)]
        if not pending:
            return acks
        if not self.serialized:
            log.info("log.conditional_writes_serialized", stream=self._stream)
            self.serialized = True  # a clustered stream after all: from now on, waves and locks
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        for index in pending:
            wait = _NOT_READY_FIRST_WAIT
            while _not_ready(acks[index]) and loop.time() < deadline:
                await asyncio.sleep(wait)  # a write of another process is being replicated
                wait = min(wait * 2, _NOT_READY_MAX_WAIT)
                (acks[index],) = await self._publish([messages[index]])
        return acks

    async def _record_deletion(self, activity: Activity) -> Recorded:
        """The deletion and its tombstones, atomically; refused if the organization has a tombstone already.

        The deletion checks lane 0 and is followed by its tombstone there; every other lane's tombstone
        checks its own lane, so a write in flight in any lane makes the deletion wait for it.
        """
        organization_id = activity.organization_id
        body = _marker_body(organization_id)
        messages: list[Message] = [
            (subject_of(activity), encode_body(activity), self._headers(activity, lane=LANES[0])),
            (tombstone_subject(organization_id, LANES[0]), body, {}),
            *(
                (tombstone_subject(organization_id, lane), body, still_open_condition(organization_id, lane))
                for lane in LANES[1:]
            ),
        ]
        ack = await self._publish_atomic(messages)
        if ack.error is not None and ack.error.err_code == _DUPLICATE_IN_ATOMIC_BATCH:
            return await self._earlier_deletion(activity)
        if _refused(ack):
            self.deleted.add(organization_id)
            raise OrganizationDeletedError(organization_id)
        recorded = self._recorded(ack)
        self.deleted.add(organization_id)
        # An atomic batch is stored contiguously; its acknowledgement names its last message.
        return Recorded(self._codec.cursor(recorded.cursor.sequence - len(messages) + 1), duplicate=False)

    async def _earlier_deletion(self, activity: Activity) -> Recorded:
        """JetStream has seen the deletion's idempotency key within the duplicate window: find what it recorded.

        A retried deletion answers like any retried write, with the first cursor and ``duplicate``.
        """
        organization_id = activity.organization_id
        tombstone = await self._last_message(tombstone_subject(organization_id, LANES[0]))
        if tombstone is not None and tombstone.seq is not None:
            self.deleted.add(organization_id)
            position = tombstone.seq - 1  # the deletion is stored right before its tombstone
            deletion = await self._message_at(position)
            if (deletion.headers or {}).get(MSG_ID_HEADER) == activity.idempotency_key:
                return Recorded(self._codec.cursor(position), duplicate=True)
            raise OrganizationDeletedError(organization_id)
        raise FailedPreconditionError(
            f"idempotency_key {activity.idempotency_key!r} was recorded for another event within the duplicate window"
        )

    async def _record_fenced(self, activity: Activity, expected: int) -> Recorded:
        """One event conditional on its own subject (``expected``) and on its organization having no tombstone.

        One message carries one condition, so the organization's goes on a second message, on
        ``fence.<org>``, stored atomically with the event (a message nothing delivers).
        """
        event = (subject_of(activity), encode_body(activity), self._headers(activity, expected=expected))
        organization_id = activity.organization_id
        condition = still_open_condition(organization_id, self._lane_for(organization_id))
        fence = (fence_subject(organization_id), _marker_body(organization_id), condition)
        ack = await self._publish_atomic([event, fence])
        if ack.error is not None and ack.error.err_code == _WRONG_LAST_SEQUENCE:
            # Which of the two conditions failed? The tombstone, if there is one now (it never goes away).
            if await self._has_tombstone(activity.organization_id):
                self.deleted.add(activity.organization_id)
                raise OrganizationDeletedError(activity.organization_id)
            raise ConcurrentChangeError(ack.error.description)
        recorded = self._recorded(ack)
        return Recorded(self._codec.cursor(recorded.cursor.sequence - 1), duplicate=False)

    async def _has_tombstone(self, organization_id: str) -> bool:
        return await self._last_message(tombstone_subject(organization_id, LANES[0])) is not None

    async def _last_message(self, subject: str) -> RawStreamMsg | None:
        """The last message on ``subject``, asked of the stream leader (None: there is none)."""
        try:
            return await self._connection.manager.get_msg(self._stream, subject=subject)
        except nats.js.errors.NotFoundError:
            return None
        except (nats.errors.Error, TimeoutError) as exc:
            raise UnavailableError(f"cannot read the log: {type(exc).__name__}") from exc

    async def _message_at(self, sequence: int) -> RawStreamMsg:
        try:
            return await self._connection.manager.get_msg(self._stream, seq=sequence)
        except (nats.errors.Error, TimeoutError) as exc:
            raise UnavailableError(f"cannot read the log: {type(exc).__name__}") from exc

    async def _publish(self, messages: Sequence[Message]) -> list[PubAck]:
        """Publish pipelined and wait for every acknowledgement (in the request's order)."""
        client = self._connection.client
        acks = self._inbox(client)
        try:
            batch = await acks.open(len(messages))
        except (TimeoutError, nats.errors.Error) as exc:
            raise UnavailableError(f"NATS did not accept the write: {type(exc).__name__}") from exc
        try:
            # These awaits do not suspend while nats-py's buffer has room (2 MiB by default): the
            # batch then reaches the socket in one write. The order on the connection is the order
            # in the log, so the request's order holds either way.
            for index, (subject, body, headers) in enumerate(messages):
                await client.publish(subject, body, reply=batch.reply(index), headers=headers)
            # A plain timer: cheaper than wait_for/timeout() on this per-call path.
            timer = asyncio.get_running_loop().call_later(self._timeout, batch.expire)
            try:
                await batch.done
            finally:
                timer.cancel()
        except (TimeoutError, nats.errors.Error) as exc:
            raise UnavailableError(f"NATS did not acknowledge the write: {type(exc).__name__}") from exc
        finally:
            acks.close(batch)
        return [_arrived(ack) for ack in batch.acks]

    async def _publish_atomic(self, messages: Sequence[Message]) -> PubAck:
        """Publish ``messages`` as one atomic batch (all stored, contiguously, or none); returns the commit's ack.

        Refused as not ready (see ``_org_locks``), the batch stored nothing and is sent again, until ``timeout``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        wait = _NOT_READY_FIRST_WAIT
        ack = await self._publish_atomic_once(messages)
        while _not_ready(ack) and loop.time() < deadline:
            await asyncio.sleep(wait)
            wait = min(wait * 2, _NOT_READY_MAX_WAIT)
            ack = await self._publish_atomic_once(messages)
        return ack

    async def _publish_atomic_once(self, messages: Sequence[Message]) -> PubAck:
        batch_id = f"{self._batch_prefix}-{next(self._batch_ids):x}"
        client = self._connection.client
        last = len(messages) - 1
        try:
            for index, (subject, body, headers) in enumerate(messages[:last]):
                batch_headers = {**headers, BATCH_ID_HEADER: batch_id, BATCH_SEQUENCE_HEADER: str(index + 1)}
                await client.publish(subject, body, headers=batch_headers)
        except (TimeoutError, nats.errors.Error) as exc:
            raise UnavailableError(f"NATS did not accept the write: {type(exc).__name__}") from exc
        subject, body, headers = messages[last]
        commit = {**headers, BATCH_ID_HEADER: batch_id, BATCH_SEQUENCE_HEADER: str(last + 1), BATCH_COMMIT_HEADER: "1"}
        (ack,) = await self._publish([(subject, body, commit)])
        return ack

    def _inbox(self, client: Client) -> AckInbox:
        if self._acks is None or self._acks.client is not client:
            self._acks = AckInbox(client)
        return self._acks

    def _recorded(self, ack: PubAck) -> Recorded:
        if ack.error is not None:
            raise UnavailableError(f"JetStream refused the write: {ack.error.description or ack.error.code}")
        return Recorded(self._codec.cursor(ack.seq), duplicate=ack.duplicate)

    def _lane_for(self, organization_id: str) -> int:
        """This write's lane: the first on a single server; in turn per organization when serialized."""
        lanes = self._lanes
        if not self.serialized or len(lanes) == 1:
            return lanes[0]
        return self._next_lane_of(organization_id)

    def _next_lane_of(self, organization_id: str) -> int:
        lanes = self._lanes
        turns = self._next_lane
        if len(turns) > _MAX_TRACKED_LANES:
            turns.clear()  # only recent writes matter: a lane's mark clears moments after its write
        turn = turns.get(organization_id, 0)
        turns[organization_id] = turn + 1
        return lanes[turn % len(lanes)]

    def _headers(
        self, activity: Activity, *, still_open: bool = False, expected: int | None = None, lane: int | None = None
    ) -> dict[str, str]:
        if lane is None and still_open:
            lane = self._lane_for(activity.organization_id)
        if lane is None:
            headers = {EXPECTED_STREAM_HEADER: self._stream}
        else:  # one literal: this runs for every event
            headers = {
                EXPECTED_STREAM_HEADER: self._stream,
                EXPECTED_LAST_SUBJECT_SEQUENCE_HEADER: "0",
                EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT_HEADER: tombstone_subject(activity.organization_id, lane),
            }
        if activity.idempotency_key is not None:
            headers[MSG_ID_HEADER] = activity.idempotency_key
        if activity.public:
            headers[PUBLIC_HEADER] = "1"
        if expected is not None:
            headers[EXPECTED_LAST_SUBJECT_SEQUENCE_HEADER] = str(expected)
        return headers


def _refused(ack: PubAck) -> bool:
    """Refused by a condition: for a message conditional on its organization's tombstone, deleted."""
    return ack.error is not None and ack.error.err_code == _WRONG_LAST_SEQUENCE


def _not_ready(ack: PubAck) -> bool:
    return ack.error is not None and ack.error.err_code == _NOT_READY


def _marker_body(organization_id: str) -> bytes:
    """The body of a tombstone or fence: not an event, but readable by anything that reads the whole log."""
    return msgspec.json.encode({"organizationId": organization_id})


def _arrived(ack: PubAck | None) -> PubAck:
    assert ack is not None  # the batch is done only when every acknowledgement arrived
    return ack
