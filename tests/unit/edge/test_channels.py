"""Channels without a server: joins, live flow, and what a NATS disconnect holds back (fake NATS and log)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from tests.unit.edge._events import CODEC, page
from tests.unit.edge.test_connection import change_ids, frames
from userstream.edge.channels import State
from userstream.edge.connection import Connection
from userstream.edge.hub import Hub
from userstream.eventlog.reader import StoredMessage
from userstream.eventlog.subjects import LAST_SEQUENCE_HEADER, SEQUENCE_HEADER, SUBJECT_HEADER, org_subject
from userstream.policy import default_policy


class FakeSubscription:
    def __init__(self, subject: str) -> None:
        self.subject = subject
        self._pending_queue: Any = None

    async def unsubscribe(self) -> None:
        return None


class FakeClient:
    def __init__(self) -> None:
        self.subscriptions: dict[str, FakeSubscription] = {}

    async def subscribe(self, subject: str, **_: object) -> FakeSubscription:
        subscription = FakeSubscription(subject)
        self.subscriptions[subject] = subscription
        return subscription

    async def flush(self) -> None:
        return None

    def deliver(self, subject: str, sequence: int, previous: int, data: bytes) -> None:
        """A republished message arriving on the wire."""
        headers = {
            SEQUENCE_HEADER: str(sequence),
            LAST_SEQUENCE_HEADER: str(previous),
            SUBJECT_HEADER: subject,
        }
        message = type("Msg", (), {"headers": headers, "data": data, "subject": "live." + subject})()
        self.subscriptions["live." + subject]._pending_queue.put_nowait(message)


class FakeNats:
    def __init__(self) -> None:
        self.client = FakeClient()
        self.listeners: list[Callable[[bool], None]] = []

    def on_state_change(self, listener: Callable[[bool], None]) -> None:
        self.listeners.append(listener)

    def set_connected(self, connected: bool) -> None:
        for listener in self.listeners:
            listener(connected)


class FakeLog:
    """The log's messages by subject; reads of a subject can be held at a gate."""

    def __init__(self) -> None:
        self.messages: dict[str, list[StoredMessage]] = defaultdict(list)
        self.gates: dict[str, asyncio.Event] = {}

    def store(self, sequence: int, organization: str) -> bytes:
        subject = org_subject(organization)
        body = page(sequence, organization).body
        self.messages[subject].append(StoredMessage(sequence, subject, body, False))
        return body

    async def last_sequence(self, subject: str) -> int:
        await self._gate(subject)
        stored = self.messages.get(subject)
        return stored[-1].sequence if stored else 0

    async def read(self, subject: str, after: int, until: int) -> list[StoredMessage]:
        await self._gate(subject)
        return [m for m in self.messages.get(subject, []) if after < m.sequence <= until]

    async def _gate(self, subject: str) -> None:
        gate = self.gates.get(subject)
        if gate is not None:
            await gate.wait()


def _hub(nats: FakeNats, log: FakeLog) -> Hub:
    return Hub(
        connection=nats,  # type: ignore[arg-type]  # duck-typed stand-ins
        reader=log,  # type: ignore[arg-type]
        codec=lambda: CODEC,
        ring_size=16,
        on_forget=lambda _: None,
        unavailable_after=1.0,
    )


def _connection(hub: Hub, position: int) -> Connection:
    return Connection(
        hub=hub,
        policy=default_policy(),
        user_id="alice",
        system_role="user",
        memberships={"a": "member", "b": "member"},
        position=position,
        offset_target=position,
        offset_cursor=CODEC.encode(position),
        resumed=False,
        max_bytes=1_048_576,
    )


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_after_a_disconnect_nothing_newer_is_delivered_before_every_probe() -> None:
    """Live messages can arrive after the reconnect before the reconnect is announced; an older event
    that a probe then finds on another channel must still come first."""
    nats, log = FakeNats(), FakeLog()
    log.store(5, "a")
    log.store(6, "b")
    hub = _hub(nats, log)
    connection = _connection(hub, 6)
    hub.join(connection, "org.a", after=6)
    hub.join(connection, "org.b", after=6)
    connection.release()
    await _settle()
    assert {channel.state for channel in hub.channels.values()} == {State.READY}
    frames(connection)

    nats.set_connected(False)
    log.store(7, "b")  # stored while the edge was away: never seen live
    newer = log.store(8, "a")
    log.gates["org.b"] = asyncio.Event()  # org.b's probe will be slow
    nats.client.deliver("org.a", 8, 5, newer)  # arrives before the reconnect is announced
    nats.set_connected(True)
    await _settle()
    assert change_ids(frames(connection)) == [], "held until every channel has probed"
    log.gates["org.b"].set()
    await _settle()
    assert change_ids(frames(connection)) == [7, 8]
    await hub.close()


async def test_a_jump_in_the_last_sequence_is_fetched_before_the_newer_message() -> None:
    nats, log = FakeNats(), FakeLog()
    hub = _hub(nats, log)
    connection = _connection(hub, 0)
    hub.join(connection, "org.a", after=0)
    connection.release()
    await _settle()
    frames(connection)
    first = log.store(1, "a")
    nats.client.deliver("org.a", 1, 0, first)
    log.store(2, "a")  # its live copy is lost
    third = log.store(3, "a")
    nats.client.deliver("org.a", 3, 2, third)
    await _settle()
    assert change_ids(frames(connection)) == [1, 2, 3]
    assert hub.stats.gap_repairs == 1
    await hub.close()


async def test_a_channel_is_shared_and_closed_with_its_last_member() -> None:
    nats, log = FakeNats(), FakeLog()
    hub = _hub(nats, log)
    first, second = _connection(hub, 0), _connection(hub, 0)
    for connection in (first, second):
        hub.join(connection, "org.a", after=0)
        connection.release()
    await _settle()
    assert list(nats.client.subscriptions) == ["live.org.a"]
    assert hub.subscription_count == 1
    body = log.store(1, "a")
    nats.client.deliver("org.a", 1, 0, body)
    assert change_ids(frames(first)) == change_ids(frames(second)) == [1]
    first.end()
    assert "org.a" in hub.channels
    second.end()
    assert not hub.channels
    await hub.close()
