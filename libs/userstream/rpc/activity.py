"""Typed face of ``userstream.activity.v1``: message conversion and an async client."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc

from userstream.errors import InvalidArgumentError
from userstream.events.model import ActivityInput, Tx
from userstream.proto.activity.v1 import activity_pb2 as pb
from userstream.proto.activity.v1 import activity_pb2_grpc as pb_grpc
from userstream.rpc.channel import call, open_channel

# The range of google.protobuf.Timestamp: 0001-01-01T00:00:00Z..9999-12-31T23:59:59Z.
_MIN_SECONDS = -62135596800
_MAX_SECONDS = 253402300799
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RecordResult:
    cursor: str
    duplicate: bool


def input_from_pb(message: pb.Activity) -> ActivityInput:
    """The activity as sent, before validation. A Timestamp outside its valid range is left to validation."""
    tx = None
    if message.HasField("tx"):
        tx = Tx(message.tx.transaction_id, message.tx.source_id, message.tx.changed_field)
    return ActivityInput(
        type=message.type,
        entity_id=message.entity_id,
        organization_id=message.organization_id,
        user_id=message.user_id,
        role=message.role,
        data_json=message.data_json,
        changed_keys=tuple(message.changed_keys),
        tx=tx,
        idempotency_key=message.idempotency_key,
        public=message.public,
        created_at=_timestamp(message) if message.HasField("created_at") else None,
    )


def _timestamp(message: pb.Activity) -> datetime:
    seconds, nanos = message.created_at.seconds, message.created_at.nanos
    if not (_MIN_SECONDS <= seconds <= _MAX_SECONDS and 0 <= nanos < 1_000_000_000):
        raise InvalidArgumentError("created_at", "is outside 0001-01-01..9999-12-31 or has invalid nanos")
    return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)


def input_to_pb(activity: ActivityInput) -> pb.Activity:
    message = pb.Activity(
        type=activity.type,
        entity_id=activity.entity_id,
        organization_id=activity.organization_id,
        user_id=activity.user_id,
        role=activity.role,
        data_json=activity.data_json,
        changed_keys=list(activity.changed_keys),
        idempotency_key=activity.idempotency_key,
        public=activity.public,
    )
    if activity.tx is not None:
        message.tx.CopyFrom(
            pb.Tx(
                transaction_id=activity.tx.transaction_id or "",
                source_id=activity.tx.source_id or "",
                changed_field=activity.tx.changed_field or "",
            )
        )
    if activity.created_at is not None:
        message.created_at.FromDatetime(activity.created_at)
    return message


class ActivityClient:
    """Records activities through the activity service. Errors arrive as domain errors."""

    def __init__(self, address: str, timeout: float = 5.0, token: str | None = None) -> None:
        self._channel = open_channel(address, token)
        self._stub = pb_grpc.ActivityServiceStub(self._channel)
        self._timeout = timeout

    async def record(self, activity: ActivityInput) -> RecordResult:
        request = pb.RecordActivityRequest(activity=input_to_pb(activity))
        response = await call(self._stub.RecordActivity(request, timeout=self._timeout))
        return RecordResult(response.cursor, response.duplicate)

    async def record_many(self, activities: Sequence[ActivityInput]) -> list[RecordResult]:
        request = pb.RecordActivitiesRequest(activities=[input_to_pb(a) for a in activities])
        response = await call(self._stub.RecordActivities(request, timeout=self._timeout))
        return [RecordResult(r.cursor, r.duplicate) for r in response.results]

    async def get_cursor(self) -> str:
        response = await call(self._stub.GetCursor(pb.GetCursorRequest(), timeout=self._timeout))
        return response.cursor

    @property
    def channel(self) -> grpc.aio.Channel:
        return self._channel

    async def close(self) -> None:
        await self._channel.close()
