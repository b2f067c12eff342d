"""With NATS gone or frozen: UNAVAILABLE within 5 s, health follows, nothing half-recorded, recovery."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import grpc
import pytest
from nats.aio.client import Client

from tests.conftest import RunningActivity, service_env
from tests.integration.activity.conftest import (
    NOT_SERVING,
    SERVICE,
    SERVING,
    health,
    page,
    stored_messages,
    wait_for_health,
)
from userstream.activity.service import ActivityService
from userstream.activity.settings import ActivitySettings
from userstream.cursor import parse_cursor
from userstream.embedded_nats import NatsServerProcess
from userstream.process import wait_for
from userstream.proto.activity.v1 import activity_pb2 as pb
from userstream.proto.activity.v1 import activity_pb2_grpc as pb_grpc
from userstream.rpc.activity import ActivityClient

pytestmark = pytest.mark.integration

# CONTRACT §3 / issue 2: a dependency down is UNAVAILABLE within 5 s, never a hang.
DEADLINE = 5.0


async def unavailable_within(call: Callable[[], Awaitable[object]]) -> float:
    """Run ``call``; assert it fails UNAVAILABLE in time; return how long it took."""
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call()
    elapsed = time.monotonic() - started
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE, caught.value
    assert elapsed < DEADLINE
    return elapsed


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_nats_down_then_back(
    activity: RunningActivity,
    stub: pb_grpc.ActivityServiceStub,
    nats_server: NatsServerProcess,
    nc: Client,
    how: str,
) -> None:
    before = await stub.RecordActivity(pb.RecordActivityRequest(activity=page("before")), timeout=5)
    channel = activity.client.channel
    assert await health(channel) == SERVING

    nats_server.stop() if how == "stop" else nats_server.kill()
    await wait_for_health(channel, NOT_SERVING)
    assert await health(channel, SERVICE) == NOT_SERVING

    await unavailable_within(lambda: stub.RecordActivity(pb.RecordActivityRequest(activity=page("lost")), timeout=10))
    batch = pb.RecordActivitiesRequest(activities=[page(f"lost-{i}") for i in range(100)])
    await unavailable_within(lambda: stub.RecordActivities(batch, timeout=10))
    await unavailable_within(lambda: stub.GetCursor(pb.GetCursorRequest(), timeout=10))

    # Same port, same store: the service reconnects by itself.
    nats_server.start()
    await wait_for_health(channel, SERVING, timeout=15)
    after = await stub.RecordActivity(pb.RecordActivityRequest(activity=page("after")), timeout=5)
    assert parse_cursor(after.cursor).log_id == parse_cursor(before.cursor).log_id
    assert parse_cursor(after.cursor).sequence == parse_cursor(before.cursor).sequence + 1

    await wait_for(lambda: nc.is_connected, timeout=10)
    stored = await stored_messages(nc)
    assert len(stored) == 2  # nothing from the outage, not even part of the batch
    assert b'"entityId":"before"' in stored[0].data
    assert b'"entityId":"after"' in stored[1].data


def _thread_state(pid: int, task: str) -> str:
    """The scheduler state letter of one thread (R running, S sleeping, T stopped, …)."""
    try:
        stat = Path(f"/proc/{pid}/task/{task}/stat").read_text()
    except FileNotFoundError:
        return "T"  # the thread has gone: nothing left to stop
    return stat.rsplit(")", 1)[1].split()[0]


@pytest.fixture
def frozen(nats_server: NatsServerProcess) -> Iterator[Callable[[], None]]:
    """Freeze the server (SIGSTOP): connections stay open but nothing answers. Thawed afterwards."""
    pid = nats_server.pid
    assert pid is not None
    stopped = False

    def freeze() -> None:
        nonlocal stopped
        os.kill(pid, signal.SIGSTOP)
        stopped = True
        # The signal is delivered asynchronously: wait until every thread has really stopped.
        deadline = time.monotonic() + 5
        while not all(_thread_state(pid, task) == "T" for task in os.listdir(f"/proc/{pid}/task")):
            assert time.monotonic() < deadline, "nats-server did not stop"
            time.sleep(0.001)

    try:
        yield freeze
    finally:
        if stopped:
            os.kill(pid, signal.SIGCONT)


async def test_frozen_nats_fails_the_call_in_time_and_a_retry_never_records_twice(
    stub: pb_grpc.ActivityServiceStub, nc: Client, nats_server: NatsServerProcess, frozen: Callable[[], None]
) -> None:
    await stub.RecordActivity(pb.RecordActivityRequest(activity=page("before")), timeout=5)
    frozen()
    keyed = pb.RecordActivityRequest(activity=page("during", idempotency_key="order-7"))
    await unavailable_within(lambda: stub.RecordActivity(keyed, timeout=10))
    pid = nats_server.pid
    assert pid is not None
    os.kill(pid, signal.SIGCONT)

    # The outcome was unknown (the server may store the frozen publish once it thaws);
    # the retry with the same key settles it without a second record.
    retry = await stub.RecordActivity(keyed, timeout=5)
    stored = await stored_messages(nc)
    during = [message for message in stored if message.headers.get("Nats-Msg-Id") == "order-7"]
    assert len(during) == 1
    assert parse_cursor(retry.cursor).sequence == during[0].sequence
    assert len(stored) == 2


async def test_service_started_before_nats_serves_once_nats_arrives(tmp_path: Path) -> None:
    server = NatsServerProcess(store_dir=tmp_path / "late-nats")
    server.start()
    server.stop()  # it keeps its port; nothing listens there now
    service = ActivityService(ActivitySettings.load(port=0, env=service_env(server.url)))
    await service.start()
    client = ActivityClient(f"127.0.0.1:{service.port}")
    stub = pb_grpc.ActivityServiceStub(client.channel)
    try:
        assert await health(client.channel) == NOT_SERVING
        await unavailable_within(lambda: stub.RecordActivity(pb.RecordActivityRequest(activity=page()), timeout=10))
        server.start()
        await wait_for_health(client.channel, SERVING, timeout=15)
        response = await stub.RecordActivity(pb.RecordActivityRequest(activity=page()), timeout=5)
        assert parse_cursor(response.cursor).sequence == 1
    finally:
        await client.close()
        await service.stop()
        server.kill()
