"""The edge's live subscriptions see messages of all subjects in arrival order (``_live_queue``).

This relies on nats-py internals; if an upgrade changes them, this test fails
rather than the edge silently reordering events of different channels.
"""

from __future__ import annotations

import nats
import pytest
from nats.aio.msg import Msg

from userstream.edge._live_queue import subscribe_in_wire_order
from userstream.embedded_nats import NatsServerProcess

pytestmark = pytest.mark.integration


async def test_messages_of_several_subscriptions_arrive_in_publication_order(nats_server: NatsServerProcess) -> None:
    receiver = await nats.connect(nats_server.url)
    sender = await nats.connect(nats_server.url)
    try:
        seen: list[tuple[str, bytes]] = []

        def handle(message: Msg) -> None:
            seen.append((message.subject, message.data))

        subjects = [f"live.org.o{i}" for i in range(5)]
        subscriptions = [await subscribe_in_wire_order(receiver, subject, handle) for subject in subjects]
        await receiver.flush()
        sent = [(subjects[(i * 7) % 5], str(i).encode()) for i in range(2000)]
        for subject, data in sent:
            await sender.publish(subject, data)
        await sender.flush()
        for _ in range(200):
            if len(seen) == len(sent):
                break
            await receiver.flush()
        assert seen == sent
        # A handler that raises must not break the client's reader: later messages still arrive.
        broken = await subscribe_in_wire_order(receiver, "live.org.broken", lambda _: 1 / 0)  # type: ignore[arg-type,return-value]
        await sender.publish("live.org.broken", b"x")
        await sender.publish(subjects[0], b"after")
        await sender.flush()
        for _ in range(200):
            if seen[-1] == (subjects[0], b"after"):
                break
            await receiver.flush()
        assert seen[-1] == (subjects[0], b"after")
        for subscription in [*subscriptions, broken]:
            await subscription.unsubscribe()
    finally:
        await receiver.close()
        await sender.close()
