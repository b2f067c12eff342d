"""``userstream.activity.v1.ActivityService``: validate, then record through the log's recorder."""

from __future__ import annotations

from datetime import UTC, datetime

from userstream.errors import InvalidArgumentError, UnavailableError
from userstream.eventlog.log import EventLog
from userstream.eventlog.recorder import Recorded
from userstream.events.model import Activity
from userstream.events.validation import Limits, validate_activity
from userstream.policy import Policy
from userstream.proto.activity.v1 import activity_pb2 as pb
from userstream.proto.activity.v1 import activity_pb2_grpc as pb_grpc
from userstream.rpc.activity import input_from_pb
from userstream.rpc.server import Context
from userstream.tracing import current_traceparent

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ActivityService"].full_name


class ActivityServicer(pb_grpc.ActivityServiceServicer):
    """Thin: converts messages, validates every item before recording any, maps results back."""

    def __init__(self, log: EventLog, policy: Policy, limits: Limits, max_batch: int, *, traced: bool = False) -> None:
        self._log = log
        self._policy = policy
        self._limits = limits
        self._max_batch = max_batch
        # With tracing on, each event carries the call's trace context to the edge (docs/operations.md).
        self._traced = traced

    async def RecordActivity(  # noqa: N802  # gRPC method name
        self, request: pb.RecordActivityRequest, context: Context
    ) -> pb.RecordActivityResponse:
        if not request.HasField("activity"):
            raise InvalidArgumentError("activity", "is required")
        activity = self._validate(request.activity, "activity")
        traceparents = [current_traceparent()] if self._traced else None
        (result,) = await self._log.recorder().record([activity], traceparents=traceparents)
        return _response(result)

    async def RecordActivities(  # noqa: N802  # gRPC method name
        self, request: pb.RecordActivitiesRequest, context: Context
    ) -> pb.RecordActivitiesResponse:
        if len(request.activities) > self._max_batch:
            raise InvalidArgumentError(
                "activities", f"holds {len(request.activities)} items; at most {self._max_batch}"
            )
        # One server time for the whole batch: the items arrived together.
        now = datetime.now(UTC)
        activities = [
            self._validate(item, f"activities[{index}]", now) for index, item in enumerate(request.activities)
        ]
        if not activities:
            return pb.RecordActivitiesResponse()
        traceparents = [current_traceparent()] * len(activities) if self._traced else None
        results = await self._log.recorder().record(activities, traceparents=traceparents)
        response = pb.RecordActivitiesResponse()
        add = response.results.add  # fills the repeated field in place, no copy per result
        for result in results:
            add(cursor=str(result.cursor), duplicate=result.duplicate)
        return response

    async def GetCursor(  # noqa: N802  # gRPC method name
        self, request: pb.GetCursorRequest, context: Context
    ) -> pb.GetCursorResponse:
        if not self._log.ready:
            raise UnavailableError("the log is not available: NATS is not connected")
        return pb.GetCursorResponse(cursor=str(await self._log.head()))

    def _validate(self, message: pb.Activity, where: str, now: datetime | None = None) -> Activity:
        try:
            return validate_activity(input_from_pb(message), self._policy, self._limits, now=now)
        except InvalidArgumentError as error:
            raise error.within(where) from None


def _response(result: Recorded) -> pb.RecordActivityResponse:
    return pb.RecordActivityResponse(cursor=str(result.cursor), duplicate=result.duplicate)
