"""Minimal reproductions of defects the oracle found in soak and fault runs (each fixed; kept as regressions)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from userstream.embedded_nats import NatsServerProcess

from tests.support.stack import Stack, start_stack

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


@pytest.fixture
async def stack(nats_server: NatsServerProcess) -> AsyncIterator[Stack]:
    running = await start_stack(nats_server.url, edge_env={"PING_INTERVAL": "0.5"})
    try:
        yield running
    finally:
        await running.stop()


async def test_resume_behind_a_channel_opened_at_a_position_of_another_subject(stack: Stack) -> None:
    """A channel opened at the head remembers that position as the start of what it holds. A client
    resuming from further back reads the difference from the log, up to that position — which is
    not a sequence of the channel's subject. The read waited for a message at or past it that never
    came, timed out, and the stream was closed `unavailable`, again on every retry."""
    await stack.acl.grant_membership("alice", "acme", "member")
    await stack.acl.grant_membership("bob", "acme", "member")
    before = await stack.head()
    missed = [await stack.page("acme", f"p{index}") for index in range(12)]  # more than one read's single gets
    await stack.page("elsewhere", "x")  # the head is now on another subject
    bob = await stack.stream("bob")  # opens the channel org.acme at the head
    assert (await bob.next_event()).event == "offset"
    alice = await stack.stream("alice", last_event_id=before)
    events = await alice.events_until(lambda event: event.event in ("offset", "close"), timeout=10)
    assert [event.id for event in events if event.event == "change"] == missed
    assert events[-1].event == "offset"
    await alice.close()
    await bob.close()
