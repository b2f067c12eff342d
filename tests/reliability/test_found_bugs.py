"""Minimal reproductions of defects the oracle found in soak and fault runs (each fixed; kept as regressions)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.stack import Stack, start_stack
from userstream.embedded_nats import NatsServerProcess
from userstream.errors import FailedPreconditionError, UnavailableError
from userstream.eventlog.reader import StoredMessage
from userstream.events import ActivityInput

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
    try:
        events = await alice.events_until(lambda event: event.event in ("offset", "close"), timeout=10)
        assert [event.id for event in events if event.event == "change"] == missed
        assert events[-1].event == "offset"
    finally:
        await alice.close()
        await bob.close()


async def test_two_streams_of_one_member_agree_on_events_after_organization_deleted(stack: Stack) -> None:
    """Two streams of the same user, one opened before and one after an `organization.deleted`, must carry the
    same events from then on. The edge dropped the org's channel on the first stream only, while acl kept the
    memberships, so a later event of the org reached the second stream and not the first. Deletion is now final
    (CONTRACT §2): acl reports no membership of the org from the deletion on, and no later event of it is
    recorded at all."""
    await stack.acl.grant_membership("alice", "acme", "member")
    opened_before = await stack.stream("alice")
    assert (await opened_before.next_event()).event == "offset"
    deleted = await stack.record("organization.deleted", "acme")
    opened_after = await stack.stream("alice")
    assert (await opened_after.next_event()).event == "offset"
    try:
        with pytest.raises(FailedPreconditionError, match="acme"):
            await stack.page("acme", "cleanup")
        marker = await stack.acl.grant_membership("alice", "marker", "member")
        first = await opened_before.events_until(lambda event: event.id == marker.cursor)
        second = await opened_after.events_until(lambda event: event.id == marker.cursor)
        assert [event.id for event in second if event.event == "change"] == [marker.cursor]
        assert [event.id for event in first if event.event == "change"] == [deleted, marker.cursor]
    finally:
        await opened_before.close()
        await opened_after.close()


async def test_a_join_survives_the_last_member_leaving_before_it_completes(stack: Stack) -> None:
    """alice joins org.acme (her membership event) while bob, the channel's only member, leaves it (his
    revocation, next in the same burst). The join was completed a loop iteration later, but bob's leave had
    closed the channel in between, as if nobody wanted it: alice then never received anything of acme."""
    await stack.acl.grant_membership("bob", "acme", "member")
    alice = await stack.stream("alice")
    bob = await stack.stream("bob")
    for stream in (alice, bob):
        assert (await stream.next_event()).event == "offset"
    grant, _revoke = await stack.activity.client.record_many(
        [
            ActivityInput(type="membership.created", organization_id="acme", user_id="alice", role="member"),
            ActivityInput(type="membership.deleted", organization_id="acme", user_id="bob"),
        ]
    )
    try:
        page = await stack.page("acme", "after")
        events = await alice.events_until(lambda event: event.id == page, timeout=5)
        assert [event.id for event in events if event.event == "change"] == [grant.cursor, page]
    finally:
        await alice.close()
        await bob.close()


async def test_a_channel_that_cannot_catch_up_delivers_nothing_past_what_it_missed(
    nats_server: NatsServerProcess,
) -> None:
    """When a channel's catch-up gives up (the log unreachable for longer than the edge waits), its members
    are closed `unavailable` so that they resume later. They were released first, which delivered what the
    other channels had buffered - events after the ones the failed channel never fetched. alice's revocation
    was missed on user.alice and acme's next page reached her; her client then resumed after both, so the
    revocation was lost for good and acme kept flowing to her. Found by the long soak under CPU starvation,
    where log reads timed out; here the read of acme's channel fails on purpose (alice's own subject now
    comes from the worker's user feed, in memory)."""
    stack = await start_stack(nats_server.url, edge_env={"NATS_REQUEST_TIMEOUT": "0.3"})
    try:
        await stack.acl.grant_membership("alice", "acme", "member")
        before = await stack.head()
        revoke = await stack.acl.revoke_membership("alice", "acme")
        after_revoke = await stack.page("acme", "not-for-alice")
        reader = stack.edge.runtime.reader
        read, read_page = reader.read, reader.read_page

        async def org_subject_unreachable(subject: str, after: int, until: int) -> list[StoredMessage]:
            if subject == "org.acme":
                raise UnavailableError("injected: the log does not answer for org.acme")
            return await read(subject, after, until)

        async def org_pages_unreachable(
            subject: str, after: int, until: int, limit: int, max_bytes: int
        ) -> list[StoredMessage]:
            if subject == "org.acme":
                raise UnavailableError("injected: the log does not answer for org.acme")
            return await read_page(subject, after, until, limit, max_bytes)

        # Fault injection at the log's edge: whole reads (repairs, probes) and pages (catch-ups).
        reader.read = org_subject_unreachable  # type: ignore[method-assign]
        reader.read_page = org_pages_unreachable  # type: ignore[method-assign]
        alice = await stack.stream("alice", last_event_id=before)
        try:
            events = await alice.read_to_end(timeout=10)
        finally:
            await alice.close()
        delivered = [event.id for event in events if event.event == "change"]
        assert after_revoke not in delivered
        assert revoke.cursor not in delivered  # it could not be read; it is delivered when alice resumes
        assert events[-1].event == "close"
    finally:
        await stack.stop()
