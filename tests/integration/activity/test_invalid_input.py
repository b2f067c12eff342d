"""Every bad input over gRPC: INVALID_ARGUMENT naming the field, nothing recorded, service still up."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.client import Client

from tests.conftest import RunningActivity
from tests.integration.activity.conftest import invalid_argument_field, message_count, page
from userstream.errors import InvalidArgumentError
from userstream.events import ActivityInput
from userstream.proto.activity.v1 import activity_pb2 as pb
from userstream.proto.activity.v1 import activity_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration


def timestamp(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


MEMBER = {"type": "membership.created", "organization_id": "acme", "user_id": "alice", "role": "member"}
ORGANIZATION = {"type": "organization.updated", "organization_id": "acme"}

# (what is wrong, the activity, the field named)
BAD: list[tuple[str, pb.Activity, str]] = [
    ("no type", pb.Activity(entity_id="p1", organization_id="acme"), "type"),
    ("malformed type", page(type="page"), "type"),
    ("unknown action", page(type="page.renamed"), "type"),
    ("upper-case type", page(type="Page.updated"), "type"),
    ("undeclared entity type", page(type="invoice.created"), "type"),
    ("no organization", page(organization_id=""), "organization_id"),
    ("organization id with a dot", page(organization_id="a.b"), "organization_id"),
    ("organization id with a wildcard", page(organization_id="*"), "organization_id"),
    ("organization id too long", page(organization_id="o" * 129), "organization_id"),
    ("no entity id", page(entity_id=""), "entity_id"),
    ("entity id with a space", page(entity_id="p 1"), "entity_id"),
    ("non-ASCII entity id", page(entity_id="päge"), "entity_id"),
    ("bad actor id", page(user_id="bob>"), "user_id"),
    ("role on a product event", page(role="admin"), "role"),
    (
        "organization event for another entity",
        pb.Activity(**ORGANIZATION, entity_id="x"),
        "entity_id",
    ),
    ("membership without member", pb.Activity(**{**MEMBER, "user_id": ""}), "user_id"),
    ("membership member id invalid", pb.Activity(**{**MEMBER, "user_id": "al ice"}), "user_id"),
    ("membership without role", pb.Activity(**{**MEMBER, "role": ""}), "role"),
    ("membership.updated without role", pb.Activity(**{**MEMBER, "type": "membership.updated", "role": ""}), "role"),
    ("membership with unknown role", pb.Activity(**{**MEMBER, "role": "owner"}), "role"),
    ("membership with entity id", pb.Activity(**{**MEMBER, "entity_id": "x"}), "entity_id"),
    ("membership data contradicting", pb.Activity(**MEMBER, data_json='{"role":"admin"}'), "data_json"),
    ("public on a non-public type", page(type="attachment.created", public=True), "public"),
    (
        "public on an organization event",
        pb.Activity(**ORGANIZATION, public=True),
        "public",
    ),
    ("public on a membership event", pb.Activity(**MEMBER, public=True), "public"),
    ("data an array", page(data_json="[1]"), "data_json"),
    ("data a string", page(data_json='"x"'), "data_json"),
    ("data null", page(data_json="null"), "data_json"),
    ("data not JSON", page(data_json="{oops}"), "data_json"),
    ("data with trailing garbage", page(data_json='{"a":1}x'), "data_json"),
    ("data too big", page(data_json='{"a":"' + "x" * (256 * 1024) + '"}'), "data_json"),
    ("data too deep", page(data_json='{"a":' + "[" * 100 + "]" * 100 + "}"), "data_json"),
    ("data absurdly deep", page(data_json='{"a":' + "[" * 200_000 + "]" * 200_000 + "}"), "data_json"),
    ("empty changed key", page(changed_keys=["a", ""]), "changed_keys[1]"),
    ("changed key too long", page(changed_keys=["k" * 257]), "changed_keys[0]"),
    ("too many changed keys", page(changed_keys=[f"k{i}" for i in range(1025)]), "changed_keys"),
    ("tx.transaction_id too long", page(tx=pb.Tx(transaction_id="t" * 257)), "tx.transaction_id"),
    ("tx.source_id too long", page(tx=pb.Tx(source_id="s" * 257)), "tx.source_id"),
    ("tx.changed_field too long", page(tx=pb.Tx(changed_field="c" * 257)), "tx.changed_field"),
    ("idempotency key too long", page(idempotency_key="k" * 129), "idempotency_key"),
    ("idempotency key with a line break", page(idempotency_key="a\r\nNats-Expected-Stream: X"), "idempotency_key"),
    ("idempotency key with NUL", page(idempotency_key="a\x00"), "idempotency_key"),
    ("idempotency key with surrounding space", page(idempotency_key=" k"), "idempotency_key"),
    ("created_at before year 1", page(created_at=timestamp(-62135596801)), "created_at"),
    ("created_at after year 9999", page(created_at=timestamp(253402300800)), "created_at"),
    ("created_at negative nanos", page(created_at=timestamp(0, -1)), "created_at"),
    ("created_at nanos overflow", page(created_at=timestamp(0, 1_000_000_000)), "created_at"),
]


@pytest.mark.parametrize(("bad", "field"), [(a, f) for _, a, f in BAD], ids=[what for what, _, _ in BAD])
async def test_bad_activity_is_refused_naming_the_field(
    stub: pb_grpc.ActivityServiceStub, nc: Client, bad: pb.Activity, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as single:
        await stub.RecordActivity(pb.RecordActivityRequest(activity=bad), timeout=5)
    assert invalid_argument_field(single.value) == f"activity.{field}"
    with pytest.raises(grpc.aio.AioRpcError) as batch:
        await stub.RecordActivities(pb.RecordActivitiesRequest(activities=[page("ok"), bad]), timeout=5)
    assert invalid_argument_field(batch.value) == f"activities[1].{field}"
    assert await message_count(nc) == 0
    # The service is still up and records the next good activity.
    await stub.RecordActivity(pb.RecordActivityRequest(activity=page()), timeout=5)
    assert await message_count(nc) == 1


async def test_request_without_an_activity_names_it(stub: pb_grpc.ActivityServiceStub, nc: Client) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RecordActivity(pb.RecordActivityRequest(), timeout=5)
    assert invalid_argument_field(caught.value) == "activity"
    assert await message_count(nc) == 0


async def test_the_typed_client_raises_the_domain_error(activity: RunningActivity) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        await activity.client.record(ActivityInput(type="page.updated", entity_id="p1", organization_id="a b"))
    assert caught.value.field == "activity.organization_id"


def raw_call(channel: grpc.aio.Channel, method: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(
        f"/userstream.activity.v1.ActivityService/{method}",
        request_serializer=lambda data: data,
        response_deserializer=lambda data: data,
    )


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xff\xff\xff",  # not protobuf at all
        b"\x0a\x05\x0a\x03\xff\xfe\xfd",  # activity.type with invalid UTF-8
        b"\x0a\x10\x0a",  # a length running past the end
    ],
    ids=["garbage", "invalid-utf8", "truncated"],
)
@pytest.mark.parametrize("method", ["RecordActivity", "RecordActivities"])
async def test_undecodable_requests_are_invalid_argument(
    activity: RunningActivity, nc: Client, method: str, payload: bytes
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw_call(activity.client.channel, method)(payload, timeout=5)
    assert invalid_argument_field(caught.value) == "request"
    assert await message_count(nc) == 0
    assert await activity.client.get_cursor()  # still serving


async def test_unknown_fields_are_ignored_as_protobuf_prescribes(activity: RunningActivity, nc: Client) -> None:
    request = pb.RecordActivityRequest(activity=page()).SerializeToString() + b"\xa0\x06\x01"  # field 100 = 1
    response = pb.RecordActivityResponse.FromString(await raw_call(activity.client.channel, "RecordActivity")(request))
    assert response.cursor
    assert await message_count(nc) == 1
