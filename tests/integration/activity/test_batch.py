"""``RecordActivities``: all-or-nothing validation, request order = result order = log order."""

from __future__ import annotations

import asyncio

import grpc
import msgspec
import pytest
from nats.aio.client import Client

from tests.integration.activity.conftest import invalid_argument_field, message_count, page, stored_messages
from userstream.activity.settings import MAX_BATCH
from userstream.cursor import parse_cursor
from userstream.proto.activity.v1 import activity_pb2 as pb
from userstream.proto.activity.v1 import activity_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration


def mixed_batch(size: int) -> list[pb.Activity]:
    """Alternating subjects, so order across subjects is visible."""
    items = []
    for index in range(size):
        if index % 3 == 2:
            items.append(
                pb.Activity(type="membership.created", organization_id="acme", user_id=f"u{index}", role="member")
            )
        else:
            items.append(page(f"p{index}", organization_id=("acme", "beta")[index % 2]))
    return items


async def test_results_follow_the_request_and_the_log_follows_both(
    stub: pb_grpc.ActivityServiceStub, nc: Client
) -> None:
    batch = mixed_batch(50)
    response = await stub.RecordActivities(pb.RecordActivitiesRequest(activities=batch), timeout=5)
    sequences = [parse_cursor(result.cursor).sequence for result in response.results]
    assert sequences == list(range(1, 51))
    stored = await stored_messages(nc)
    assert [message.sequence for message in stored] == sequences
    for item, message in zip(batch, stored, strict=True):
        body = msgspec.json.decode(message.data)
        if item.type.startswith("membership."):
            assert (message.subject, body["userId"]) == (f"user.{item.user_id}", item.user_id)
        else:
            assert (message.subject, body["entityId"]) == (f"org.{item.organization_id}", item.entity_id)


async def test_concurrent_batches_are_each_contiguous_in_order(stub: pb_grpc.ActivityServiceStub, nc: Client) -> None:
    batches = [[page(f"b{b}-{i}") for i in range(20)] for b in range(5)]
    responses = await asyncio.gather(
        *(stub.RecordActivities(pb.RecordActivitiesRequest(activities=batch), timeout=5) for batch in batches)
    )
    for response in responses:
        sequences = [parse_cursor(result.cursor).sequence for result in response.results]
        assert sequences == sorted(sequences)
    assert await message_count(nc) == 100


@pytest.mark.parametrize("bad_index", [0, 3, 9])
async def test_one_invalid_item_records_nothing_and_names_its_index(
    stub: pb_grpc.ActivityServiceStub, nc: Client, bad_index: int
) -> None:
    batch = [page(f"p{i}") for i in range(10)]
    batch[bad_index] = page(f"p{bad_index}", organization_id="not valid")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RecordActivities(pb.RecordActivitiesRequest(activities=batch), timeout=5)
    assert invalid_argument_field(caught.value) == f"activities[{bad_index}].organization_id"
    assert await message_count(nc) == 0


async def test_the_first_invalid_item_is_named(stub: pb_grpc.ActivityServiceStub, nc: Client) -> None:
    batch = [page("p0"), pb.Activity(type="page.bogus"), page("p2", data_json="[]")]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RecordActivities(pb.RecordActivitiesRequest(activities=batch), timeout=5)
    assert invalid_argument_field(caught.value) == "activities[1].type"
    assert await message_count(nc) == 0


async def test_nested_fields_are_named_with_their_index(stub: pb_grpc.ActivityServiceStub) -> None:
    batch = [page("p0"), page("p1", tx=pb.Tx(source_id="s" * 300))]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RecordActivities(pb.RecordActivitiesRequest(activities=batch), timeout=5)
    assert invalid_argument_field(caught.value) == "activities[1].tx.source_id"


async def test_an_empty_batch_records_nothing(stub: pb_grpc.ActivityServiceStub, nc: Client) -> None:
    response = await stub.RecordActivities(pb.RecordActivitiesRequest(), timeout=5)
    assert list(response.results) == []
    assert await message_count(nc) == 0


async def test_a_batch_over_the_limit_is_refused(stub: pb_grpc.ActivityServiceStub, nc: Client) -> None:
    batch = [page(f"p{i}") for i in range(MAX_BATCH + 1)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RecordActivities(pb.RecordActivitiesRequest(activities=batch), timeout=5)
    assert invalid_argument_field(caught.value) == "activities"
    assert await message_count(nc) == 0


async def test_a_batch_at_the_limit_is_recorded(stub: pb_grpc.ActivityServiceStub, nc: Client) -> None:
    batch = [page(f"p{i}") for i in range(MAX_BATCH)]
    response = await stub.RecordActivities(pb.RecordActivitiesRequest(activities=batch), timeout=10)
    assert len(response.results) == MAX_BATCH
    assert await message_count(nc) == MAX_BATCH


async def test_items_without_created_at_share_the_time_the_batch_arrived(
    stub: pb_grpc.ActivityServiceStub, nc: Client
) -> None:
    await stub.RecordActivities(pb.RecordActivitiesRequest(activities=[page(f"p{i}") for i in range(5)]), timeout=5)
    times = {msgspec.json.decode(message.data)["createdAt"] for message in await stored_messages(nc)}
    assert len(times) == 1


async def test_a_request_past_grpcs_message_limit_is_refused_whole_and_the_server_stays_up(
    stub: pb_grpc.ActivityServiceStub, nc: Client
) -> None:
    # Each item is valid (200 KiB of data, under the 256 KiB default); together 5 MB, past gRPC's 4 MiB.
    big = '{"body":"' + "x" * (200 * 1024) + '"}'
    batch = [page(f"p{index}", data_json=big) for index in range(25)]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.RecordActivities(pb.RecordActivitiesRequest(activities=batch), timeout=10)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await message_count(nc) == 0

    # The same items in calls under the limit are recorded.
    for start in range(0, 25, 10):
        await stub.RecordActivities(pb.RecordActivitiesRequest(activities=batch[start : start + 10]), timeout=10)
    assert await message_count(nc) == 25
