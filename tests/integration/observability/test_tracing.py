"""One trace from RecordActivity to the edge's fan-out, exported to a real OTLP/HTTP receiver (issue 18).

The application's call carries a W3C ``traceparent``; activity's gRPC server
span (OpenTelemetry's instrumentation) is its child; the event takes that
span's context through NATS; the edge's fan-out span is a child of it, once
per event per worker, with the deliveries counted as an attribute.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

import grpc
import nats
import pytest

from tests.support.edge import RunningEdge, edge_settings, start_edge
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.sse import open_stream
from tests.support.stack import SECRET, start_stack
from userstream.acl.service import AclService
from userstream.acl.settings import AclSettings
from userstream.activity.service import ActivityService
from userstream.activity.settings import ActivitySettings
from userstream.cursor import parse_cursor
from userstream.edge.fanout_trace import DELIVERIES_ATTRIBUTE, SPAN_NAME
from userstream.embedded_nats import NatsServerProcess
from userstream.eventlog.subjects import org_subject
from userstream.proto.activity.v1 import activity_pb2 as pb
from userstream.proto.activity.v1 import activity_pb2_grpc as pb_grpc
from userstream.rpc.acl import AclClient
from userstream.rpc.errors import FIELD_METADATA_KEY
from userstream.settings import Env
from userstream.tokens import issue_token
from userstream.tracing import TRACEPARENT_HEADER, TracingSettings

pytestmark = pytest.mark.integration

SERVER_KIND = 2  # Span.SpanKind.SPAN_KIND_SERVER
CLIENT_KIND = 3  # Span.SpanKind.SPAN_KIND_CLIENT
CONSUMER_KIND = 5  # Span.SpanKind.SPAN_KIND_CONSUMER
ACL_SERVICE = "/userstream.acl.v1.AclService/"
RECORD_ACTIVITY = "/userstream.activity.v1.ActivityService/RecordActivity"
RECORD_ACTIVITIES = "/userstream.activity.v1.ActivityService/RecordActivities"
# The application's own span, as its tracing would put it in the call's metadata.
APP_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
APP_SPAN_ID = "00f067aa0ba902b7"


@dataclass
class TracedStack:
    receiver: OtlpReceiver
    activity: ActivityService
    acl_service: AclService
    stub: pb_grpc.ActivityServiceStub
    acl: AclClient
    edge: RunningEdge

    async def flush(self) -> None:
        """Export what both services buffered (the batch processor would within 5 s anyway)."""
        for tracing in (self.activity.tracing, self.acl_service.tracing, self.edge.runtime.tracing):
            assert tracing is not None
            await asyncio.to_thread(tracing.provider.force_flush)

    async def spans(self, done: Callable[[list[ReceivedSpan]], bool], timeout: float = 30.0) -> list[ReceivedSpan]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            await self.flush()
            spans = self.receiver.received()
            if done(spans):
                return spans
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"spans never arrived; received {spans}")
            await asyncio.sleep(0.1)


def _otel_env(receiver: OtlpReceiver, service: str) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": service}


@pytest.fixture
async def traced(nats_server: NatsServerProcess) -> AsyncIterator[TracedStack]:
    receiver = OtlpReceiver().start()
    activity = ActivityService(
        ActivitySettings.load(
            port=0,
            env=Env({"USERSTREAM_NATS_URL": nats_server.url, **_otel_env(receiver, "app-activity")}),
        )
    )
    await activity.start()
    await activity.wait_ready()
    acl_service = AclService(
        AclSettings.load(port=0, env=Env({"USERSTREAM_NATS_URL": nats_server.url, **_otel_env(receiver, "app-acl")}))
    )
    await acl_service.start()
    await acl_service.wait_ready()
    acl_addr = f"127.0.0.1:{acl_service.port}"
    settings = edge_settings(nats_server.url, acl_addr, SECRET)
    tracing = TracingSettings.from_env(Env(_otel_env(receiver, "app-edge")))
    edge = await start_edge(replace(settings, tracing=tracing))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{activity.port}")
    acl = AclClient(acl_addr)
    try:
        yield TracedStack(receiver, activity, acl_service, pb_grpc.ActivityServiceStub(channel), acl, edge)
    finally:
        await channel.close()
        await edge.stop()
        await acl.close()
        await acl_service.stop()
        await activity.stop()
        receiver.stop()


def _auth(user_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(user_id, SECRET, 3600, now=time.time())}"}


def _page(entity_id: str) -> pb.Activity:
    return pb.Activity(type="page.updated", organization_id="acme", entity_id=entity_id)


async def test_one_trace_from_record_activity_to_the_edge_fan_out(traced: TracedStack) -> None:
    await traced.acl.grant_membership("alice", "acme", "member")
    await traced.acl.grant_membership("bob", "acme", "member")
    async with (
        await open_stream(traced.edge.base_url, headers=_auth("alice")) as alice,
        await open_stream(traced.edge.base_url, headers=_auth("bob")) as bob,
    ):
        assert (await alice.next_event()).event == "offset"
        assert (await bob.next_event()).event == "offset"
        app_context = f"00-{APP_TRACE_ID}-{APP_SPAN_ID}-01"
        response = await traced.stub.RecordActivity(
            pb.RecordActivityRequest(activity=_page("p1")), metadata=((TRACEPARENT_HEADER, app_context),), timeout=10
        )
        (alice_change,) = await alice.changes(1)
        (bob_change,) = await bob.changes(1)
        assert alice_change.id == bob_change.id == response.cursor

        def complete(spans: list[ReceivedSpan]) -> bool:
            return any(span.name == SPAN_NAME and span.trace_id == APP_TRACE_ID for span in spans)

        spans = [span for span in await traced.spans(complete) if span.trace_id == APP_TRACE_ID]

    (server,) = [span for span in spans if span.name == RECORD_ACTIVITY]
    assert server.service == "app-activity"
    assert server.kind == SERVER_KIND
    assert server.parent_span_id == APP_SPAN_ID  # the application's span
    (fan_out,) = [span for span in spans if span.name == SPAN_NAME]  # one per event per worker, not per stream
    assert fan_out.service == "app-edge"
    assert fan_out.kind == CONSUMER_KIND
    assert fan_out.parent_span_id == server.span_id
    assert fan_out.attributes[DELIVERIES_ATTRIBUTE] == 2  # alice and bob, on this worker
    assert fan_out.attributes["messaging.destination.name"] == org_subject("acme")
    assert fan_out.attributes["userstream.cursor"] == response.cursor


async def test_each_event_of_a_batch_is_a_child_of_the_batch_call(traced: TracedStack) -> None:
    await traced.acl.grant_membership("alice", "acme", "member")
    async with await open_stream(traced.edge.base_url, headers=_auth("alice")) as alice:
        assert (await alice.next_event()).event == "offset"
        response = await traced.stub.RecordActivities(
            pb.RecordActivitiesRequest(activities=[_page("p1"), _page("p2"), _page("p3")]), timeout=10
        )
        await alice.changes(3)
        cursors = {result.cursor for result in response.results}

        def complete(spans: list[ReceivedSpan]) -> bool:
            found = {span.attributes.get("userstream.cursor") for span in spans if span.name == SPAN_NAME}
            return cursors <= found and any(span.name == RECORD_ACTIVITIES for span in spans)

        spans = await traced.spans(complete)
    (server,) = [span for span in spans if span.name == RECORD_ACTIVITIES]
    assert server.parent_span_id == ""  # no caller context: the server span starts the trace
    fan_outs = [span for span in spans if span.name == SPAN_NAME and span.attributes["userstream.cursor"] in cursors]
    assert len(fan_outs) == 3
    assert {span.trace_id for span in fan_outs} == {server.trace_id}
    assert {span.parent_span_id for span in fan_outs} == {server.span_id}


async def test_an_unsampled_call_costs_the_edge_no_span(traced: TracedStack) -> None:
    """The edge follows the writer's sampling decision: flags 00 means no span, though tracing is on."""
    await traced.acl.grant_membership("alice", "acme", "member")
    async with await open_stream(traced.edge.base_url, headers=_auth("alice")) as alice:
        assert (await alice.next_event()).event == "offset"
        unsampled = f"00-{APP_TRACE_ID}-{APP_SPAN_ID}-00"
        await traced.stub.RecordActivity(
            pb.RecordActivityRequest(activity=_page("p1")), metadata=((TRACEPARENT_HEADER, unsampled),), timeout=10
        )
        sampled = await traced.stub.RecordActivity(pb.RecordActivityRequest(activity=_page("p2")), timeout=10)
        await alice.changes(2)
        # Spans are exported in order of ending: once the second event's span is in, the first one's would be.
        spans = await traced.spans(
            lambda spans: any(span.attributes.get("userstream.cursor") == sampled.cursor for span in spans)
        )
    assert [span for span in spans if span.trace_id == APP_TRACE_ID] == []


async def test_the_edge_asks_acl_inside_a_client_span_that_parents_acl_server_span(traced: TracedStack) -> None:
    async with await open_stream(traced.edge.base_url, headers=_auth("alice")) as alice:
        assert (await alice.next_event()).event == "offset"

        def complete(spans: list[ReceivedSpan]) -> bool:
            names = {(span.service, span.kind) for span in spans if span.name.startswith(ACL_SERVICE)}
            return {("app-edge", CLIENT_KIND), ("app-acl", SERVER_KIND)} <= names

        spans = await traced.spans(complete)
    clients = [span for span in spans if span.service == "app-edge" and span.kind == CLIENT_KIND]
    servers = {span.parent_span_id: span for span in spans if span.service == "app-acl" and span.kind == SERVER_KIND}
    assert any(
        client.span_id in servers and servers[client.span_id].trace_id == client.trace_id for client in clients
    ), "acl's server span is the child of the edge's client span"


async def test_errors_keep_their_code_and_field_through_the_instrumentation(traced: TracedStack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await traced.stub.RecordActivity(
            pb.RecordActivityRequest(activity=pb.Activity(type="page.updated", organization_id="acme")), timeout=10
        )
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (FIELD_METADATA_KEY, "activity.entity_id") in tuple(raised.value.trailing_metadata() or ())
    spans = await traced.spans(lambda spans: any(span.name == RECORD_ACTIVITY for span in spans))
    (server,) = [span for span in spans if span.name == RECORD_ACTIVITY]
    assert server.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]


async def test_with_tracing_off_nothing_is_traced_and_events_carry_no_context(nats_server: NatsServerProcess) -> None:
    stack = await start_stack(nats_server.url)
    try:
        assert stack.activity.service.tracing is None
        assert stack.acl_service.tracing is None
        assert stack.edge.runtime.tracing is None
        assert stack.edge.runtime.hub.tracer is None
        cursor = await stack.page("acme")
        client = await nats.connect(nats_server.url)
        try:
            stored = await client.jetstream().get_msg(
                stack.activity.service.settings.stream.name, parse_cursor(cursor).sequence
            )
        finally:
            await client.close()
        assert TRACEPARENT_HEADER not in (stored.headers or {})
    finally:
        await stack.stop()
