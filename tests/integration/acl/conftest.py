"""acl in this process, on a free port, against the test's nats-server (with activity owning the log)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import nats
import nats.js.errors
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import RunningActivity, service_env, start_activity
from userstream.acl.service import AclService
from userstream.acl.settings import AclSettings
from userstream.acl_state.log_events import MembershipEvent, decode_membership_event
from userstream.embedded_nats import NatsServerProcess
from userstream.events.model import Action
from userstream.rpc.acl import AclClient


@dataclass
class RunningAcl:
    service: AclService
    client: AclClient

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.service.port}"

    async def close(self) -> None:
        await self.client.close()
        await self.service.stop()


async def start_acl(nats_url: str, *, accept_retention_gap: bool = False, **env: str) -> RunningAcl:
    """Start acl and wait until it serves (or refuses to, after a retention gap)."""
    settings = AclSettings.load(port=0, env=service_env(nats_url, **env), accept_retention_gap=accept_retention_gap)
    service = AclService(settings)
    await service.start()
    await service.wait_ready()
    return RunningAcl(service, AclClient(f"127.0.0.1:{service.port}"))


@pytest.fixture
async def acl(activity: RunningActivity, nats_server: NatsServerProcess) -> AsyncIterator[RunningAcl]:
    """One acl replica; ``activity`` runs too (it owns the log)."""
    running = await start_acl(nats_server.url)
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def short_log(nats_server: NatsServerProcess) -> AsyncIterator[RunningActivity]:
    """Activity keeping only the last 10 events: older ones are purged as new ones arrive."""
    running = await start_activity(nats_server.url, RETENTION_MAX_MSGS="10")
    try:
        yield running
    finally:
        await running.client.close()
        await running.service.stop()


async def serving(address: str) -> bool:
    """Whether the gRPC health service at ``address`` reports SERVING (overall)."""
    channel = grpc.aio.insecure_channel(address)
    try:
        response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2.0)
    except grpc.aio.AioRpcError:
        return False
    finally:
        await channel.close()
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


@dataclass(frozen=True)
class LoggedMembership:
    sequence: int
    event: MembershipEvent


async def read_membership_log(nats_url: str, stream: str = "ACTIVITY") -> list[LoggedMembership]:
    """Every membership event the log still holds, read with a plain client (independently of acl)."""
    client = await nats.connect(nats_url)
    try:
        manager = client.jsm()
        info = await manager.stream_info(stream)
        events: list[LoggedMembership] = []
        sequence = max(info.state.first_seq, 1) - 1
        while sequence < info.state.last_seq:
            try:
                raw = await manager.get_msg(stream, seq=sequence + 1, subject="user.*", next=True)
            except nats.js.errors.NotFoundError:
                break
            sequence = int(raw.seq or 0)
            events.append(LoggedMembership(sequence, decode_membership_event(raw.subject or "", raw.data or b"")))
        return events
    finally:
        await client.close()


def replay(events: list[LoggedMembership], position: int | None = None) -> dict[str, dict[str, str]]:
    """The memberships those events imply (CONTRACT §2's rules, written out plainly)."""
    state: dict[str, dict[str, str]] = {}
    for logged in events:
        if position is not None and logged.sequence > position:
            break
        event = logged.event
        memberships = state.setdefault(event.user_id, {})
        if event.action is Action.DELETE:
            memberships.pop(event.organization_id, None)
        else:
            assert event.role is not None
            memberships[event.organization_id] = event.role
    return state
