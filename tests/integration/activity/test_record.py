"""Recording through gRPC lands in JetStream and on ``live.*`` exactly as the contract says."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.client import Client

from tests.conftest import RunningActivity
from tests.integration.activity.conftest import LiveTap, page, stored_messages
from userstream.cursor import parse_cursor
from userstream.events import ActivityInput
from userstream.proto.activity.v1 import activity_pb2 as pb
from userstream.proto.activity.v1 import activity_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration


async def test_product_event_is_stored_on_its_organization_subject(
    stub: pb_grpc.ActivityServiceStub, nc: Client
) -> None:
    created = Timestamp()
    created.FromDatetime(datetime(2026, 2, 3, 4, 5, 6, 789000, tzinfo=UTC))
    activity = page(
        user_id="bob",
        data_json='{"title":"Plan","n":1.50}',
        changed_keys=["title"],
        tx=pb.Tx(transaction_id="t1", source_id="tab-7", changed_field="title"),
        created_at=created,
    )
    response = await stub.RecordActivity(pb.RecordActivityRequest(activity=activity), timeout=5)
    assert not response.duplicate
    cursor = parse_cursor(response.cursor)
    assert cursor.log_id > 0

    (stored,) = await stored_messages(nc)
    assert stored.sequence == cursor.sequence
    assert stored.subject == "org.acme"
    assert stored.data == (
        b'{"type":"page.updated","action":"update","entityType":"page","resourceType":null,"entityId":"p1",'
        b'"organizationId":"acme","userId":"bob","createdAt":"2026-02-03T04:05:06.789Z","changedKeys":["title"],'
        b'"tx":{"transactionId":"t1","sourceId":"tab-7","changedField":"title"},"data":{"title":"Plan","n":1.50}}'
    )
    assert "Nats-Msg-Id" not in stored.headers
    assert "Userstream-Public" not in stored.headers


async def test_membership_event_is_stored_on_the_members_subject(stub: pb_grpc.ActivityServiceStub, nc: Client) -> None:
    activity = pb.Activity(type="membership.created", organization_id="acme", user_id="alice", role="admin")
    await stub.RecordActivity(pb.RecordActivityRequest(activity=activity), timeout=5)
    (stored,) = await stored_messages(nc)
    assert stored.subject == "user.alice"
    body = msgspec.json.decode(stored.data)
    assert body["resourceType"] == "membership"
    assert body["entityType"] is None
    assert body["data"] == {"userId": "alice", "organizationId": "acme", "role": "admin"}


async def test_organization_event_is_stored_on_its_subject(stub: pb_grpc.ActivityServiceStub, nc: Client) -> None:
    await stub.RecordActivity(
        pb.RecordActivityRequest(activity=pb.Activity(type="organization.deleted", organization_id="acme")), timeout=5
    )
    stored, *tombstones = await stored_messages(nc)
    assert stored.subject == "org.acme"
    assert msgspec.json.decode(stored.data)["entityId"] == "acme"
    # A deletion is stored with its organization's tombstones (docs/activity.md, "organization.deleted is final").
    assert [(tombstone.subject, tombstone.sequence) for tombstone in tombstones] == [
        (f"tombstone.acme.{lane}", stored.sequence + 1 + lane) for lane in range(5)
    ]


async def test_created_at_is_set_by_the_server_when_absent(stub: pb_grpc.ActivityServiceStub, nc: Client) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    await stub.RecordActivity(pb.RecordActivityRequest(activity=page()), timeout=5)
    (stored,) = await stored_messages(nc)
    created = datetime.fromisoformat(msgspec.json.decode(stored.data)["createdAt"])
    assert before <= created <= datetime.now(UTC)


async def test_public_flag_and_idempotency_key_travel_as_headers(stub: pb_grpc.ActivityServiceStub, nc: Client) -> None:
    await stub.RecordActivity(
        pb.RecordActivityRequest(activity=page(public=True, idempotency_key="order-1")), timeout=5
    )
    (stored,) = await stored_messages(nc)
    assert stored.headers["Userstream-Public"] == "1"
    assert stored.headers["Nats-Msg-Id"] == "order-1"


async def test_every_event_is_republished_on_live_with_its_sequence(
    stub: pb_grpc.ActivityServiceStub, live: LiveTap
) -> None:
    sent = [
        page("p1", "acme"),
        pb.Activity(type="membership.created", organization_id="acme", user_id="alice", role="member"),
        page("p2", "acme"),
        page("p3", "beta"),
    ]
    cursors = []
    for activity in sent:
        response = await stub.RecordActivity(pb.RecordActivityRequest(activity=activity), timeout=5)
        cursors.append(parse_cursor(response.cursor).sequence)

    messages = await live.wait_for(4)
    assert [message.subject for message in messages] == [
        "live.org.acme",
        "live.user.alice",
        "live.org.acme",
        "live.org.beta",
    ]
    assert [int(message.headers["Nats-Sequence"]) for message in messages if message.headers] == cursors
    # Nats-Last-Sequence: the previous sequence on the same subject (0 for the first), for gap detection.
    assert [int(message.headers["Nats-Last-Sequence"]) for message in messages if message.headers] == [
        0,
        0,
        cursors[0],
        0,
    ]
    assert all(message.headers and message.headers["Nats-Stream"] == "ACTIVITY" for message in messages)
    assert msgspec.json.decode(messages[2].data)["entityId"] == "p2"


async def test_cursors_are_the_same_strings_the_stream_will_send(activity: RunningActivity) -> None:
    first = await activity.client.record(ActivityInput(type="page.created", entity_id="p1", organization_id="acme"))
    second = await activity.client.record(ActivityInput(type="page.updated", entity_id="p1", organization_id="acme"))
    assert first.cursor.isdigit()
    assert int(second.cursor) == int(first.cursor) + 1
    assert parse_cursor(first.cursor).log_id == parse_cursor(second.cursor).log_id


async def test_get_cursor_on_an_empty_log_is_before_the_first_event(activity: RunningActivity, nc: Client) -> None:
    head = parse_cursor(await activity.client.get_cursor())
    assert head.sequence == 0
    assert head.log_id > 0
    assert await stored_messages(nc) == []
    first = await activity.client.record(ActivityInput(type="page.created", entity_id="p1", organization_id="acme"))
    assert parse_cursor(first.cursor) == type(head)(head.log_id, 1)


async def test_get_cursor_is_the_last_recorded_event(activity: RunningActivity) -> None:
    results = await activity.client.record_many(
        [ActivityInput(type="page.created", entity_id=f"p{i}", organization_id="acme") for i in range(3)]
    )
    assert await activity.client.get_cursor() == results[-1].cursor
