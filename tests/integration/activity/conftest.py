"""Helpers for the activity service's integration tests: raw stubs, NATS readers, health."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import nats
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.client import Client
from nats.aio.msg import Msg

from tests.conftest import RunningActivity
from userstream.embedded_nats import NatsServerProcess
from userstream.proto.activity.v1 import activity_pb2 as pb
from userstream.proto.activity.v1 import activity_pb2_grpc as pb_grpc

STREAM = "ACTIVITY"
SERVICE = "userstream.activity.v1.ActivityService"


@dataclass(frozen=True)
class Stored:
    sequence: int
    subject: str
    data: bytes
    headers: dict[str, str]


@pytest.fixture
async def nc(nats_server: NatsServerProcess) -> AsyncIterator[Client]:
    """A plain NATS client of the test's server, for reading what the service wrote."""
    client = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def stub(activity: RunningActivity) -> pb_grpc.ActivityServiceStub:
    """The raw generated stub, for checking status codes and metadata as any gRPC client sees them."""
    return pb_grpc.ActivityServiceStub(activity.client.channel)


async def stored_messages(nc: Client, stream: str = STREAM) -> list[Stored]:
    """Every message the stream retains, in order, read back from JetStream."""
    jsm = nc.jsm()
    info = await jsm.stream_info(stream)
    messages = []
    if info.state.messages == 0:
        return messages
    for sequence in range(info.state.first_seq, info.state.last_seq + 1):
        raw = await jsm.get_msg(stream, sequence, direct=True)
        assert raw.subject is not None
        assert raw.data is not None
        messages.append(Stored(sequence, raw.subject, raw.data, dict(raw.headers or {})))
    return messages


async def message_count(nc: Client, stream: str = STREAM) -> int:
    return (await nc.jsm().stream_info(stream)).state.messages


class LiveTap:
    """Collects what the stream republishes on ``live.>`` (subscribed before anything is recorded)."""

    def __init__(self) -> None:
        self.messages: list[Msg] = []
        self._arrived = asyncio.Condition()

    async def on_message(self, message: Msg) -> None:
        async with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Msg]:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.messages) >= count)
        return self.messages[:count]


@pytest.fixture
async def live(nc: Client) -> LiveTap:
    tap = LiveTap()
    await nc.subscribe("live.>", cb=tap.on_message)
    await nc.flush()
    return tap


async def health(channel: grpc.aio.Channel, service: str = "") -> int:
    """The served health status of ``service`` ("" is the whole server)."""
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=2
    )
    status: int = response.status
    return status


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def wait_for_health(channel: grpc.aio.Channel, wanted: int, timeout: float = 10.0) -> None:
    """Follow the server's health with ``Watch`` until it reports ``wanted``."""
    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
    try:
        async for update in watch:
            if update.status == wanted:
                return
    finally:
        watch.cancel()
    raise AssertionError("the health watch ended before the wanted status")


def page(entity_id: str = "p1", organization_id: str = "acme", **fields: object) -> pb.Activity:
    """A valid product activity as a client would send it; ``fields`` override or add to it."""
    values: dict[str, object] = {"type": "page.updated", "entity_id": entity_id, "organization_id": organization_id}
    return pb.Activity(**{**values, **fields})


def invalid_argument_field(error: grpc.aio.AioRpcError) -> str:
    """The field a failed call names, from its trailing metadata (checked against the message)."""
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error
    fields = [value for key, value in error.trailing_metadata() or () if key == "userstream-field"]
    assert len(fields) == 1
    field = str(fields[0])
    assert (error.details() or "").startswith(f"{field}: ")
    return field
