"""``organization.deleted`` is final (CONTRACT §2): every later write refused, the log unmoved, races decided by it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import msgspec
import pytest
from nats.aio.client import Client

from tests.conftest import RunningActivity, start_activity
from tests.integration.activity.conftest import stored_messages
from tests.support.cluster import NatsCluster
from tests.support.processes import ServiceProcess, clean_environment, start_all
from userstream.embedded_nats import NatsServerProcess
from userstream.errors import FailedPreconditionError
from userstream.events import ActivityInput
from userstream.proto.activity.v1 import activity_pb2 as pb
from userstream.proto.activity.v1 import activity_pb2_grpc as pb_grpc
from userstream.rpc.activity import ActivityClient

pytestmark = pytest.mark.integration

LATER_EVENTS = {
    "product event": pb.Activity(type="page.updated", organization_id="acme", entity_id="p1"),
    "organization event": pb.Activity(type="organization.updated", organization_id="acme"),
    "second deletion": pb.Activity(type="organization.deleted", organization_id="acme"),
    "membership created": pb.Activity(type="membership.created", organization_id="acme", user_id="u1", role="member"),
    "membership deleted": pb.Activity(type="membership.deleted", organization_id="acme", user_id="u1"),
    "with a new idempotency key": pb.Activity(
        type="page.created", organization_id="acme", entity_id="p2", idempotency_key="k-after"
    ),
}


async def record(stub: pb_grpc.ActivityServiceStub, activity: pb.Activity) -> str:
    response = await stub.RecordActivity(pb.RecordActivityRequest(activity=activity), timeout=5)
    return response.cursor


async def refusal(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call  # type: ignore[misc]  # a grpc.aio call object
    return refused.value


@pytest.mark.parametrize("later", list(LATER_EVENTS.values()), ids=list(LATER_EVENTS))
async def test_every_later_event_is_refused_and_the_log_does_not_move(
    stub: pb_grpc.ActivityServiceStub, activity: RunningActivity, later: pb.Activity
) -> None:
    await record(stub, pb.Activity(type="membership.created", organization_id="acme", user_id="u1", role="member"))
    await record(stub, pb.Activity(type="organization.deleted", organization_id="acme"))
    head = await activity.client.get_cursor()
    error = await refusal(stub.RecordActivity(pb.RecordActivityRequest(activity=later), timeout=5))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "'acme'" in (error.details() or "")
    assert await activity.client.get_cursor() == head


async def test_a_batch_with_one_later_event_records_nothing(
    stub: pb_grpc.ActivityServiceStub, activity: RunningActivity
) -> None:
    await record(stub, pb.Activity(type="organization.deleted", organization_id="acme"))
    head = await activity.client.get_cursor()
    batch = [
        pb.Activity(type="page.updated", organization_id="globex", entity_id="p1"),
        pb.Activity(type="page.updated", organization_id="acme", entity_id="p1"),
        pb.Activity(type="page.updated", organization_id="globex", entity_id="p2"),
    ]
    error = await refusal(stub.RecordActivities(pb.RecordActivitiesRequest(activities=batch), timeout=5))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "'acme'" in (error.details() or "")
    assert await activity.client.get_cursor() == head


async def test_a_batch_may_delete_an_organization_after_its_last_events(
    stub: pb_grpc.ActivityServiceStub, nc: Client
) -> None:
    batch = [
        pb.Activity(type="page.updated", organization_id="acme", entity_id="p1"),
        pb.Activity(type="organization.deleted", organization_id="acme"),
        pb.Activity(type="page.updated", organization_id="globex", entity_id="p1"),
    ]
    response = await stub.RecordActivities(pb.RecordActivitiesRequest(activities=batch), timeout=5)
    cursors = [int(result.cursor) % 10**12 for result in response.results]
    stored = {message.sequence: message for message in await stored_messages(nc)}
    assert [msgspec.json.decode(stored[sequence].data)["type"] for sequence in cursors] == [
        "page.updated",
        "organization.deleted",
        "page.updated",
    ]
    assert stored[cursors[1] + 1].subject == "tombstone.acme.0"
    # Continuing the organization within one batch is refused before anything is sent.
    head = max(stored)
    continued = [
        pb.Activity(type="organization.deleted", organization_id="initech"),
        pb.Activity(type="page.updated", organization_id="initech", entity_id="p1"),
    ]
    error = await refusal(stub.RecordActivities(pb.RecordActivitiesRequest(activities=continued), timeout=5))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert max(message.sequence for message in await stored_messages(nc)) == head


async def test_every_replica_refuses_at_once_and_after_a_restart(nats_server: NatsServerProcess) -> None:
    first = await start_activity(nats_server.url)
    second = await start_activity(nats_server.url)  # opened the log before the deletion
    try:
        await first.client.record(ActivityInput(type="organization.deleted", organization_id="acme"))
        with pytest.raises(FailedPreconditionError, match="'acme'"):
            await second.client.record(ActivityInput(type="page.updated", organization_id="acme", entity_id="p1"))
        await second.client.close()
        await second.service.stop()
        second = await start_activity(nats_server.url)
        assert "acme" in second.service.log.deleted  # read back from the log at start
        with pytest.raises(FailedPreconditionError, match="'acme'"):
            await second.client.record(ActivityInput(type="organization.updated", organization_id="acme"))
    finally:
        for running in (first, second):
            await running.client.close()
            await running.service.stop()


ROUNDS = 25
WRITERS = 3


async def test_a_write_racing_the_deletion_from_another_process_never_lands_after_it(
    nats_server: NatsServerProcess, nc: Client, tmp_path: Path
) -> None:
    """Two activity processes: one deletes an organization while the other keeps writing into it (single
    events, batches, membership events), round after round. Whatever the interleaving, the log holds no event
    of the organization after its deletion, and every write the writer was told succeeded is before it."""
    env = clean_environment(NATS_URL=nats_server.url, LOG_LEVEL="warning")
    processes = [ServiceProcess("activity", dict(env), tmp_path / f"activity{index}.log") for index in range(2)]
    try:
        await start_all(processes)
        deleter, writer = (ActivityClient(process.address) for process in processes)
        accepted: dict[str, list[int]] = {}
        try:
            for round_ in range(ROUNDS):
                organization_id = f"race-{round_}"
                accepted[organization_id] = []
                started = asyncio.Event()

                async def write(
                    lane: int, organization_id: str = organization_id, started: asyncio.Event = started
                ) -> None:
                    for index in range(10_000):
                        items = _writes(organization_id, lane, index)
                        try:
                            results = await writer.record_many(items)
                        except FailedPreconditionError:
                            return
                        accepted[organization_id].extend(int(result.cursor) % 10**12 for result in results)
                        started.set()
                    raise AssertionError("the deletion never stopped the writer")

                async def delete(organization_id: str = organization_id, started: asyncio.Event = started) -> None:
                    await started.wait()
                    await deleter.record(ActivityInput(type="organization.deleted", organization_id=organization_id))

                await asyncio.wait_for(asyncio.gather(delete(), *(write(lane) for lane in range(WRITERS))), 60)
        finally:
            await deleter.close()
            await writer.close()
    finally:
        for process in processes:
            process.terminate()

    deleted_at: dict[str, int] = {}
    after_deletion = []
    for message in await stored_messages(nc):
        if message.subject.startswith(("tombstone.", "fence.")):
            continue
        body = msgspec.json.decode(message.data)
        organization_id = body["organizationId"]
        if organization_id in deleted_at:
            after_deletion.append((message.sequence, message.subject, body["type"]))
        elif body["type"] == "organization.deleted":
            deleted_at[organization_id] = message.sequence
    assert sorted(deleted_at) == sorted(accepted)
    assert after_deletion == []
    for organization_id, cursors in accepted.items():
        assert cursors, organization_id
        assert max(cursors) < deleted_at[organization_id]


def _writes(organization_id: str, lane: int, index: int) -> list[ActivityInput]:
    """A single event or a small batch, of each kind, in turn."""
    kind = index % 3
    if kind == 0:
        return [ActivityInput(type="page.updated", organization_id=organization_id, entity_id=f"p{lane}-{index}")]
    if kind == 1:
        user = f"u{lane}-{index}"
        return [ActivityInput(type="membership.created", organization_id=organization_id, user_id=user, role="member")]
    return [
        ActivityInput(type="page.updated", organization_id=organization_id, entity_id=f"b{lane}-{index}-{item}")
        for item in range(5)
    ]


async def test_a_retried_deletion_answers_as_a_duplicate(
    stub: pb_grpc.ActivityServiceStub, activity: RunningActivity
) -> None:
    keyed = pb.Activity(type="organization.deleted", organization_id="acme", idempotency_key="delete-acme")
    first = await stub.RecordActivity(pb.RecordActivityRequest(activity=keyed), timeout=5)
    head = await activity.client.get_cursor()
    again = await stub.RecordActivity(pb.RecordActivityRequest(activity=keyed), timeout=5)
    assert (again.cursor, again.duplicate, first.duplicate) == (first.cursor, True, False)
    # Another key is another deletion: refused like every later event.
    other = pb.Activity(type="organization.deleted", organization_id="acme", idempotency_key="delete-acme-2")
    error = await refusal(stub.RecordActivity(pb.RecordActivityRequest(activity=other), timeout=5))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert await activity.client.get_cursor() == head


async def test_on_a_cluster_concurrent_writes_of_one_organization_all_land(nats_cluster: NatsCluster) -> None:
    """A replicated stream's leader refuses a conditional write while another one on the same organization is
    being replicated. Concurrent batches and single events into the same organizations all succeed: from one
    process each batch in request order; from two at once every item once (a write of one organization refused
    as not ready because of the other process is sent again, possibly after later items of its batch)."""
    first = await start_activity(nats_cluster.urls, STREAM_REPLICAS="3")
    second = await start_activity(nats_cluster.urls, STREAM_REPLICAS="3")
    recorded: list[int] = []
    try:

        async def write(client: ActivityClient, lane: int, *, in_order: bool) -> None:
            for index in range(6):
                batch = [
                    ActivityInput(type="page.updated", organization_id=org, entity_id=f"p{lane}-{index}-{item}")
                    for item, org in enumerate(["acme", "acme", "globex", "acme", "globex"])
                ]
                cursors = [int(result.cursor) for result in await client.record_many(batch)]
                if in_order:
                    assert cursors == sorted(cursors)
                single = ActivityInput(type="page.updated", organization_id="acme", entity_id=f"s{lane}-{index}")
                recorded.extend([*cursors, int((await client.record(single)).cursor)])

        await asyncio.wait_for(asyncio.gather(*(write(first.client, lane, in_order=True) for lane in range(8))), 60)
        both = [write(running.client, lane, in_order=False) for lane in range(8, 14) for running in (first, second)]
        await asyncio.wait_for(asyncio.gather(*both), 60)
        assert len(set(recorded)) == len(recorded) == (8 + 6 * 2) * 6 * 6
        await first.client.record(ActivityInput(type="organization.deleted", organization_id="acme"))
        with pytest.raises(FailedPreconditionError, match="'acme'"):
            await second.client.record(ActivityInput(type="page.updated", organization_id="acme", entity_id="late"))
        await second.client.record(ActivityInput(type="page.updated", organization_id="globex", entity_id="fine"))
    finally:
        for running in (first, second):
            await running.client.close()
            await running.service.stop()


async def test_a_batch_repeating_a_deletion_records_nothing_unless_it_is_a_retry(
    stub: pb_grpc.ActivityServiceStub, activity: RunningActivity
) -> None:
    keyed = pb.Activity(type="organization.deleted", organization_id="acme", idempotency_key="delete-acme")
    first = await stub.RecordActivity(pb.RecordActivityRequest(activity=keyed), timeout=5)
    head = await activity.client.get_cursor()
    page = pb.Activity(type="page.updated", organization_id="globex", entity_id="p1")
    another = pb.Activity(type="organization.deleted", organization_id="acme", idempotency_key="another")
    error = await refusal(stub.RecordActivities(pb.RecordActivitiesRequest(activities=[page, another]), timeout=5))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert await activity.client.get_cursor() == head  # the page before it was not recorded either
    retried = await stub.RecordActivities(pb.RecordActivitiesRequest(activities=[page, keyed]), timeout=5)
    assert [result.duplicate for result in retried.results] == [False, True]
    assert retried.results[1].cursor == first.cursor
