"""The one publishing path: validated activities into the log, in order, idempotently.

Both the activity service and acl's membership mutations record through here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import PubAck

from userstream.cursor import Cursor, CursorCodec
from userstream.errors import UnavailableError, UserstreamError
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

    A batch is published pipelined (all messages sent, then all acknowledgements
    awaited), which keeps the order of the request. If NATS does not acknowledge
    within ``timeout`` the call fails with ``UnavailableError``: some items may
    have been recorded, and retrying with the same idempotency keys is safe.
    """

    def __init__(self, connection: NatsConnection, stream: str, codec: CursorCodec, timeout: float) -> None:
        self._connection = connection
        self._stream = stream
        self._codec = codec
        self._timeout = timeout
        self._js: JetStreamContext | None = None

    async def record(
        self, activities: Sequence[Activity], *, expected_last_subject_sequence: int | None = None
    ) -> list[Recorded]:
        """Record ``activities`` in order.

        ``expected_last_subject_sequence`` (single activity only) makes the write
        conditional: it fails with ``ConcurrentChangeError`` if the subject's last
        sequence is not that value (optimistic concurrency for acl).
        """
        if expected_last_subject_sequence is not None and len(activities) != 1:
            raise ValueError("a conditional write records exactly one activity")
        if not self._connection.connected:
            raise UnavailableError("NATS is not connected")
        js = self._jetstream()
        futures: list[asyncio.Future[PubAck]] = []
        try:
            for activity in activities:
                headers = self._headers(activity, expected_last_subject_sequence)
                futures.append(
                    await js.publish_async(
                        subject_of(activity), encode_body(activity), wait_stall=self._timeout, headers=headers
                    )
                )
            acks = await asyncio.wait_for(asyncio.gather(*futures), timeout=self._timeout)
        except nats.js.errors.APIError as exc:
            if exc.err_code == _WRONG_LAST_SEQUENCE:
                raise ConcurrentChangeError(str(exc.description)) from exc
            raise UnavailableError(f"JetStream refused the write: {exc.description}") from exc
        except (TimeoutError, nats.errors.Error) as exc:
            raise UnavailableError(f"NATS did not acknowledge the write: {type(exc).__name__}") from exc
        finally:
            for future in futures:
                # Free what nats-py holds for acknowledgements that never came.
                future.cancel()
        return [Recorded(self._codec.cursor(ack.seq), duplicate=bool(ack.duplicate)) for ack in acks]

    def _jetstream(self) -> JetStreamContext:
        # One context for the connection's lifetime: it owns the inbox that collects acknowledgements.
        if self._js is None:
            self._js = self._connection.client.jetstream(timeout=self._timeout)
        return self._js

    def _headers(self, activity: Activity, expected_last_subject_sequence: int | None) -> dict[str, str]:
        headers = {EXPECTED_STREAM_HEADER: self._stream}
        if activity.idempotency_key is not None:
            headers[MSG_ID_HEADER] = activity.idempotency_key
        if activity.public:
            headers[PUBLIC_HEADER] = "1"
        if expected_last_subject_sequence is not None:
            headers[EXPECTED_LAST_SUBJECT_SEQUENCE_HEADER] = str(expected_last_subject_sequence)
        return headers
