"""Fuzzing the gRPC services (activity and acl, as separate processes) with hypothesis.

For every input: the answer is a status the contract names for it — never
INTERNAL or UNKNOWN; a refusal (INVALID_ARGUMENT) names the field and records
nothing (the log's head does not move, a system role does not change); what is
accepted is recorded exactly once. At the end every process is still up, every
stored event is well-formed, and the edge replays all of them.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability._deployment import Deployment
from tests.reliability._readback import log_id_of, read_log
from tests.reliability._strategies import acl_requests, activities
from tests.reliability.conftest import Deploy
from tests.reliability.oracle import EVENT_SUBJECT_PREFIXES
from tests.support.sse import open_stream
from userstream.embedded_nats import NatsServerProcess
from userstream.eventlog.deletions import LANES
from userstream.proto.acl.v1 import acl_pb2, acl_pb2_grpc
from userstream.proto.activity.v1 import activity_pb2, activity_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

EXAMPLES = 200
FIELD_KEY = "userstream-field"
TIMEOUT = 10.0
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
ACL_ANSWERS = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,  # GetSubject at a cursor acl no longer answers for; a deleted organization
}
# A write into an organization the fuzzing deleted earlier is refused (CONTRACT §2), and records nothing.
RECORD_ANSWERS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}


def log_messages(activity: activity_pb2.Activity) -> int:
    """Messages the log gains when ``activity`` is recorded: a deletion comes with its tombstones."""
    return 1 + len(LANES) if activity.type == "organization.deleted" else 1


class Caller:
    """Blocking calls (hypothesis drives them from a worker thread) that return the status, not raise it."""

    def __init__(self, deployment: Deployment) -> None:
        self.activity_channel = grpc.insecure_channel(deployment.activity.address)
        self.acl_channel = grpc.insecure_channel(deployment.acl.address)
        self.activity = activity_pb2_grpc.ActivityServiceStub(self.activity_channel)
        self.acl = acl_pb2_grpc.AclServiceStub(self.acl_channel)
        self.tried: Counter[str] = Counter()
        self.answers: Counter[str] = Counter()

    def head(self) -> str:
        return str(self.activity.GetCursor(activity_pb2.GetCursorRequest(), timeout=TIMEOUT).cursor)

    def call(self, method: Callable[..., Any], request: Any, name: str) -> tuple[grpc.StatusCode, Any, str | None]:
        self.tried[name] += 1
        try:
            response = method(request, timeout=TIMEOUT)
        except grpc.RpcError as error:
            failed = cast("grpc.Call", error)  # a failed blocking call raises an error that is also the call
            code = failed.code()
            field = next((str(value) for key, value in failed.trailing_metadata() or () if key == FIELD_KEY), None)
            self.answers[f"{name} {code.name}"] += 1
            return code, None, field
        self.answers[f"{name} OK"] += 1
        return grpc.StatusCode.OK, response, None

    def raw(self, service: str, method: str, payload: bytes) -> grpc.StatusCode:
        channel = self.activity_channel if service.startswith("userstream.activity") else self.acl_channel
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            f"/{service}/{method}", request_serializer=None, response_deserializer=None
        )
        self.tried[f"{method} (raw bytes)"] += 1
        try:
            call(payload, timeout=TIMEOUT)
        except grpc.RpcError as error:
            return cast("grpc.Call", error).code()
        return grpc.StatusCode.OK

    def close(self) -> None:
        self.activity_channel.close()
        self.acl_channel.close()


def fuzz_activity(caller: Caller) -> None:
    @FUZZ_SETTINGS
    @given(activity=activities())
    def one(activity: activity_pb2.Activity) -> None:
        before = caller.head()
        request = activity_pb2.RecordActivityRequest(activity=activity)
        code, response, field = caller.call(caller.activity.RecordActivity, request, "RecordActivity")
        assert code in RECORD_ANSWERS, (code, activity)
        if code is grpc.StatusCode.INVALID_ARGUMENT:
            assert field
            assert field.startswith("activity."), field
        if code is not grpc.StatusCode.OK:
            assert caller.head() == before, "a refused activity changed the log"
        else:
            assert int(caller.head()) - int(before) == (0 if response.duplicate else log_messages(activity))

    @FUZZ_SETTINGS
    @given(batch=st.lists(activities(), max_size=6))
    def batch(batch: list[activity_pb2.Activity]) -> None:
        before = caller.head()
        request = activity_pb2.RecordActivitiesRequest(activities=batch)
        code, response, field = caller.call(caller.activity.RecordActivities, request, "RecordActivities")
        assert code in RECORD_ANSWERS, code
        if code is grpc.StatusCode.INVALID_ARGUMENT:
            assert field
            assert field.startswith("activities["), field
        if code is not grpc.StatusCode.OK:
            assert caller.head() == before, "a refused batch recorded something"
        else:
            recorded = [item for item, result in zip(batch, response.results, strict=True) if not result.duplicate]
            assert int(caller.head()) - int(before) == sum(log_messages(item) for item in recorded)

    @settings(max_examples=EXAMPLES // 3, deadline=None, database=None)
    @given(method=st.sampled_from(["RecordActivity", "RecordActivities", "GetCursor"]), payload=st.binary(max_size=64))
    def raw(method: str, payload: bytes) -> None:
        before = caller.head()
        code = caller.raw("userstream.activity.v1.ActivityService", method, payload)
        assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), code
        if code is grpc.StatusCode.INVALID_ARGUMENT:
            assert caller.head() == before

    one()
    batch()
    raw()


def fuzz_acl(caller: Caller) -> None:
    @FUZZ_SETTINGS
    @given(call=acl_requests())
    def one(call: tuple[str, Any]) -> None:
        name, request = call
        before = caller.head()
        role_before = _system_role(caller, request) if name == "SetSystemRole" else None
        code, _, field = caller.call(getattr(caller.acl, name), request, name)
        assert code in ACL_ANSWERS, (code, name, request)
        if code is grpc.StatusCode.INVALID_ARGUMENT:
            assert field, f"{name} refused without naming the field"
            assert caller.head() == before, f"a refused {name} recorded something"
            if role_before is not None:
                assert _system_role(caller, request) == role_before

    @settings(max_examples=EXAMPLES // 3, deadline=None, database=None)
    @given(
        method=st.sampled_from(["GetSubject", "CheckAccess", "GrantMembership", "SetSystemRole"]),
        payload=st.binary(max_size=64),
    )
    def raw(method: str, payload: bytes) -> None:
        before = caller.head()
        code = caller.raw("userstream.acl.v1.AclService", method, payload)
        assert code in ACL_ANSWERS, code
        if code is grpc.StatusCode.INVALID_ARGUMENT:
            assert caller.head() == before

    one()
    raw()


def _system_role(caller: Caller, request: acl_pb2.SetSystemRoleRequest) -> str | None:
    try:
        return str(
            caller.acl.GetSubject(acl_pb2.GetSubjectRequest(user_id=request.user_id), timeout=TIMEOUT).system_role
        )
    except grpc.RpcError:
        return None  # not a valid user id: there is no role to change


async def test_fuzz_grpc_inputs(deploy: Deploy, nats_server: NatsServerProcess) -> None:
    async with deploy(nats_server.url, edges=1) as deployment:
        origin = await deployment.activity_client.get_cursor()
        caller = Caller(deployment)
        try:
            await asyncio.to_thread(fuzz_activity, caller)
            await asyncio.to_thread(fuzz_acl, caller)
        finally:
            caller.close()
        print(json.dumps({"tried": dict(caller.tried), "answers": dict(caller.answers)}, indent=2))
        assert not deployment.not_running(), deployment.not_running()
        head = await deployment.activity_client.get_cursor()
        log = await read_log(nats_server.url, log_id_of(head))
        for entry in log:
            if not entry.subject.startswith(EVENT_SUBJECT_PREFIXES):
                continue  # an organization's tombstones, a fence: bookkeeping, not events
            body = json.loads(entry.body)  # every stored event is well-formed JSON of the change payload's shape
            assert {"type", "action", "organizationId", "createdAt"} <= body.keys(), body
        # Whatever was accepted, the edge can replay: the public stream from the start reaches the head.
        stream = await open_stream(deployment.edges[0].base_url, "/public/stream", query={"offset": origin})
        try:
            events = await stream.events_until(lambda event: event.event in ("offset", "close"), timeout=30)
        finally:
            await stream.close()
        assert events[-1].event == "offset", events[-1]
