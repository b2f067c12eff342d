"""The one publishing path: validated activities into the log, in order, idempotently.

Both the activity service and acl's membership mutations record through here
(and so does every other writer), so the rule that ``organization.deleted`` is
final (``userstream.eventlog.deletions``) holds for all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec

from userstream.cursor import Cursor, CursorCodec
from userstream.errors import FailedPreconditionError, OrganizationDeletedError, UnavailableError, UserstreamError
from userstream.eventlog._acks import PubAck
from userstream.eventlog._org_locks import OrganizationLocks
from userstream.eventlog._publisher import (
    DUPLICATE_IN_ATOMIC_BATCH,
    WRONG_LAST_SEQUENCE,
    Message,
    Publisher,
    failed_with,
)
from userstream.eventlog.deletions import (
    LANES,
    WRITE_LANES,
    DeletedOrganizations,
    is_deletion,
    refuse_later_events,
    still_open_condition,
)
from userstream.eventlog.subjects import (
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
from userstream.tracing import TRACEPARENT_HEADER

# No trace context for any activity of a call (tracing off: the common case costs one falsy check per event).
_NO_TRACES: Mapping[int, str] = {}

# Organizations whose next lane is remembered (serialized streams); forgotten all at once beyond this.
_MAX_TRACKED_LANES = 65_536


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
    deletion is stored atomically with its tombstones. A batch with a deletion
    is recorded in order, in segments: what precedes it, the deletion, what
    follows.

    On a replicated stream (``serialized``, or learnt from the first refusal as
    not ready, see ``_publisher``) JetStream replicates one conditional write
    per subject at a time: the recorder then takes an organization's lanes in
    turn, holds the request's organizations' locks, and publishes the batch in
    waves in which each organization appears once, each wave an atomic batch
    sent again whole while refused as not ready (until ``timeout``): the
    request's order holds.
    """

    def __init__(
        self,
        connection: NatsConnection,
        stream: str,
        codec: CursorCodec,
        timeout: float,
        *,
        publisher: Publisher | None = None,
        deleted: DeletedOrganizations | None = None,
        serialized: bool = False,
        lanes: tuple[int, ...] = WRITE_LANES,
    ) -> None:
        self._connection = connection
        self._stream = stream
        self._codec = codec
        self._timeout = timeout
        self._publisher = publisher if publisher is not None else Publisher(connection, stream, timeout)
        self.deleted = deleted if deleted is not None else DeletedOrganizations()
        self._serialized = serialized
        self._lanes = lanes
        self._next_lane: dict[str, int] = {}
        self._locks = OrganizationLocks()

    @property
    def serialized(self) -> bool:
        return self._serialized or self._publisher.saw_not_ready

    def for_log(self, codec: CursorCodec) -> Recorder:
        """The same recorder (publisher, acknowledgement inbox, locks) for a reopened log."""
        recorder = Recorder(
            self._connection,
            self._stream,
            codec,
            self._timeout,
            publisher=self._publisher,
            deleted=self.deleted,
            serialized=self._serialized,
            lanes=self._lanes,
        )
        recorder._locks = self._locks  # writes in flight on the old log still hold them
        return recorder

    async def record(
        self,
        activities: Sequence[Activity],
        *,
        expected_last_subject_sequence: int | None = None,
        traceparents: Sequence[str | None] | None = None,
    ) -> list[Recorded]:
        """Record ``activities`` in order.

        ``expected_last_subject_sequence`` (single activity only) makes the write
        conditional: it fails with ``ConcurrentChangeError`` if the subject's last
        sequence is not that value (optimistic concurrency for acl).
        An event of a deleted organization fails with ``OrganizationDeletedError``.

        ``traceparents`` (one per activity, None for none) are W3C trace contexts
        stored with the events, so the edge's fan-out of each joins its trace.
        """
        if expected_last_subject_sequence is not None and len(activities) != 1:
            raise ValueError("a conditional write records exactly one activity")
        if traceparents is not None and len(traceparents) != len(activities):
            raise ValueError("one traceparent (or None) per activity")
        traces = _NO_TRACES
        if traceparents is not None:
            traces = {id(a): tp for a, tp in zip(activities, traceparents, strict=True) if tp is not None}
        with_deletion = refuse_later_events(activities, self.deleted)
        if not self._connection.connected:
            raise UnavailableError("NATS is not connected")
        if not self.serialized:
            return await self._record_in_order(activities, expected_last_subject_sequence, with_deletion, traces)
        async with self._locks.holding(activity.organization_id for activity in activities):
            return await self._record_in_order(activities, expected_last_subject_sequence, with_deletion, traces)

    async def _record_in_order(
        self, activities: Sequence[Activity], expected: int | None, with_deletion: bool, traces: Mapping[int, str]
    ) -> list[Recorded]:
        if expected is not None:
            (activity,) = activities
            return [await self._record_fenced(activity, expected, traces)]
        if not with_deletion:
            return await self._record_pipelined(activities, traces)
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
                    results += await self._record_pipelined(segment, traces)
                    segment = []
                earlier = retried.get(index)
                results.append(earlier if earlier is not None else await self._record_deletion(activity, traces))
            else:
                segment.append(activity)
        if segment:
            results += await self._record_pipelined(segment, traces)
        return results

    async def _record_pipelined(self, activities: Sequence[Activity], traces: Mapping[int, str]) -> list[Recorded]:
        messages = [
            (subject_of(activity), encode_body(activity), self._headers(activity, traces, still_open=True))
            for activity in activities
        ]
        if not self.serialized:
            acks = await self._publisher.publish_retrying(messages)
        else:
            acks = []
            for start, end in self._waves(activities):
                acks += await self._publisher.publish_in_order(messages[start:end])
                if any(failed_with(ack, WRONG_LAST_SEQUENCE) for ack in acks):
                    break  # a deletion raced this batch: nothing after the refusal is sent
        refused = {
            activity.organization_id
            for activity, ack in zip(activities, acks, strict=False)
            if failed_with(ack, WRONG_LAST_SEQUENCE)
        }
        if refused:
            # Only a deletion racing this very batch gets here (a known one is refused before sending).
            await self._refuse_deleted(sorted(refused))
        return [self._recorded(ack) for ack in acks]

    async def _refuse_deleted(self, candidates: list[str]) -> None:
        """Raise the refusal for the organization among ``candidates`` that has a tombstone (a wave is refused
        whole, not naming which of its conditions failed)."""
        for organization_id in candidates:
            if len(candidates) == 1 or await self._has_tombstone(organization_id):
                self.deleted.add(organization_id)
                raise OrganizationDeletedError(organization_id)
        raise UnavailableError("JetStream refused the write: a condition failed that this recorder did not set")

    async def _has_tombstone(self, organization_id: str) -> bool:
        return await self._publisher.last_message(tombstone_subject(organization_id, LANES[0])) is not None

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

    async def _record_deletion(self, activity: Activity, traces: Mapping[int, str]) -> Recorded:
        """The deletion and its tombstones, atomically; refused if the organization has a tombstone already.

        The deletion checks lane 0 and is followed by its tombstone there; every other lane's tombstone
        checks its own lane, so a write in flight in any lane makes the deletion wait for it.
        """
        organization_id = activity.organization_id
        body = _marker_body(organization_id)
        messages: list[Message] = [
            (subject_of(activity), encode_body(activity), self._headers(activity, traces, lane=LANES[0])),
            (tombstone_subject(organization_id, LANES[0]), body, {}),
            *(
                (tombstone_subject(organization_id, lane), body, still_open_condition(organization_id, lane))
                for lane in LANES[1:]
            ),
        ]
        ack = await self._publisher.publish_atomic(messages)
        if failed_with(ack, DUPLICATE_IN_ATOMIC_BATCH):
            return await self._earlier_deletion(activity)
        if failed_with(ack, WRONG_LAST_SEQUENCE):
            self.deleted.add(organization_id)
            raise OrganizationDeletedError(organization_id)
        recorded = self._recorded(ack)
        self.deleted.add(organization_id)
        # An atomic batch is stored contiguously; its acknowledgement names its last message.
        return Recorded(self._codec.cursor(recorded.cursor.sequence - len(messages) + 1), duplicate=False)

    async def _earlier_deletion(self, activity: Activity) -> Recorded:
        """The deletion this one repeats (same idempotency key), or the refusal of a second deletion.

        A retried deletion answers like any retried write, with the first cursor and ``duplicate``.
        """
        organization_id = activity.organization_id
        tombstone = await self._publisher.last_message(tombstone_subject(organization_id, LANES[0]))
        if tombstone is not None and tombstone.seq is not None:
            self.deleted.add(organization_id)
            position = tombstone.seq - 1  # the deletion is stored right before its tombstone
            deletion = await self._publisher.message_at(position)
            if (deletion.headers or {}).get(MSG_ID_HEADER) == activity.idempotency_key:
                return Recorded(self._codec.cursor(position), duplicate=True)
            raise OrganizationDeletedError(organization_id)
        raise FailedPreconditionError(
            f"idempotency_key {activity.idempotency_key!r} was recorded for another event within the duplicate window"
        )

    async def _record_fenced(self, activity: Activity, expected: int, traces: Mapping[int, str]) -> Recorded:
        """One event conditional on its own subject (``expected``) and on its organization having no tombstone.

        One message carries one condition, so the organization's goes on a second message, on
        ``fence.<org>``, stored atomically with the event (a message nothing delivers).
        """
        event = (subject_of(activity), encode_body(activity), self._headers(activity, traces, expected=expected))
        organization_id = activity.organization_id
        condition = still_open_condition(organization_id, self._lane_for(organization_id))
        fence = (fence_subject(organization_id), _marker_body(organization_id), condition)
        ack = await self._publisher.publish_atomic([event, fence])
        if ack.error is not None and ack.error.err_code == WRONG_LAST_SEQUENCE:
            # Which of the two conditions failed? The tombstone, if there is one now (it never goes away).
            if await self._has_tombstone(organization_id):
                self.deleted.add(organization_id)
                raise OrganizationDeletedError(organization_id)
            raise ConcurrentChangeError(ack.error.description)
        recorded = self._recorded(ack)
        return Recorded(self._codec.cursor(recorded.cursor.sequence - 1), duplicate=False)

    def _recorded(self, ack: PubAck) -> Recorded:
        if ack.error is not None:
            raise UnavailableError(f"JetStream refused the write: {ack.error.description or ack.error.code}")
        return Recorded(self._codec.cursor(ack.seq), duplicate=ack.duplicate)

    def _lane_for(self, organization_id: str) -> int:
        """This write's lane: the first on a single server; in turn per organization when serialized."""
        lanes = self._lanes
        if len(lanes) == 1 or not self.serialized:
            return lanes[0]
        turns = self._next_lane
        if len(turns) > _MAX_TRACKED_LANES:
            turns.clear()  # only recent writes matter: a lane's mark clears moments after its write
        turn = turns.get(organization_id, 0)
        turns[organization_id] = turn + 1
        return lanes[turn % len(lanes)]

    def _headers(
        self,
        activity: Activity,
        traces: Mapping[int, str],
        *,
        still_open: bool = False,
        expected: int | None = None,
        lane: int | None = None,
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
        if traces:
            traceparent = traces.get(id(activity))
            if traceparent is not None:
                headers[TRACEPARENT_HEADER] = traceparent
        return headers


def _marker_body(organization_id: str) -> bytes:
    """The body of a tombstone or fence: not an event, but readable by anything that reads the whole log."""
    return msgspec.json.encode({"organizationId": organization_id})
