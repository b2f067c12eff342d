"""The one publishing path: validated activities into the log, in order, idempotently.

Both the activity service and acl's membership mutations record through here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client

from userstream.cursor import Cursor, CursorCodec
from userstream.errors import UnavailableError, UserstreamError
from userstream.eventlog._acks import AckInbox, PubAck
from userstream.eventlog.subjects import (
    EXPECTED_LAST_SUBJECT_SEQUENCE_HEADER,
    EXPECTED_STREAM_HEADER,
    MSG_ID_HEADER,
    PUBLIC_HEADER,
    subject_of,
)
from userstream.events.model import Activity
from userstream.events.wire import encode_body
from userstream.nats_connection import NatsConnection
from userstream.tracing import TRACEPARENT_HEADER

# JetStream's error code for a failed Nats-Expected-Last-Subject-Sequence check.
_WRONG_LAST_SEQUENCE = 10071


class ConcurrentChangeError(UserstreamError):
    """Another event landed on the subject since the sequence the caller expected."""


@dataclass(frozen=True, slots=True)
class Recorded:
    cursor: Cursor
    duplicate: bool


class Recorder:
    """Publishes activities to the ``ACTIVITY`` stream and returns their cursors.

    A batch is encoded first (so nothing is sent if one item cannot be), then
    published pipelined — every message written before any acknowledgement is
    awaited — which keeps the request's order in the log. If NATS does not
    acknowledge within ``timeout`` the call fails with ``UnavailableError``:
    some items may have been recorded, and retrying with the same idempotency
    keys is safe.
    """

    def __init__(
        self,
        connection: NatsConnection,
        stream: str,
        codec: CursorCodec,
        timeout: float,
        *,
        acks: AckInbox | None = None,
    ) -> None:
        self._connection = connection
        self._stream = stream
        self._codec = codec
        self._timeout = timeout
        self._acks = acks

    def for_log(self, codec: CursorCodec) -> Recorder:
        """The same recorder (and acknowledgement inbox) for a reopened log."""
        return Recorder(self._connection, self._stream, codec, self._timeout, acks=self._acks)

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

        ``traceparents`` (one per activity, None for none) are W3C trace contexts
        stored with the events, so the edge's fan-out of each joins its trace.
        """
        if expected_last_subject_sequence is not None and len(activities) != 1:
            raise ValueError("a conditional write records exactly one activity")
        if traceparents is not None and len(traceparents) != len(activities):
            raise ValueError("one traceparent (or None) per activity")
        if not self._connection.connected:
            raise UnavailableError("NATS is not connected")
        messages = [
            (subject_of(activity), encode_body(activity), self._headers(activity, expected_last_subject_sequence))
            for activity in activities
        ]
        if traceparents is not None:
            for (_, _, headers), traceparent in zip(messages, traceparents, strict=True):
                if traceparent is not None:
                    headers[TRACEPARENT_HEADER] = traceparent
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
        return [self._recorded(ack) for ack in batch.acks]

    def _inbox(self, client: Client) -> AckInbox:
        if self._acks is None or self._acks.client is not client:
            self._acks = AckInbox(client)
        return self._acks

    def _recorded(self, ack: PubAck | None) -> Recorded:
        assert ack is not None  # the batch is done only when every acknowledgement arrived
        if ack.error is not None:
            if ack.error.err_code == _WRONG_LAST_SEQUENCE:
                raise ConcurrentChangeError(ack.error.description)
            raise UnavailableError(f"JetStream refused the write: {ack.error.description or ack.error.code}")
        return Recorded(self._codec.cursor(ack.seq), duplicate=ack.duplicate)

    def _headers(self, activity: Activity, expected_last_subject_sequence: int | None) -> dict[str, str]:
        headers = {EXPECTED_STREAM_HEADER: self._stream}
        if activity.idempotency_key is not None:
            headers[MSG_ID_HEADER] = activity.idempotency_key
        if activity.public:
            headers[PUBLIC_HEADER] = "1"
        if expected_last_subject_sequence is not None:
            headers[EXPECTED_LAST_SUBJECT_SEQUENCE_HEADER] = str(expected_last_subject_sequence)
        return headers
