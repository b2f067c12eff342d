"""GetSubject at a cursor: the memberships as they stood right after that position of the log."""

from __future__ import annotations

import pytest

from tests.conftest import RunningActivity, start_activity
from tests.integration.acl.conftest import RunningAcl, start_acl
from userstream.cursor import SEQUENCE_SPAN, parse_cursor
from userstream.embedded_nats import NatsServerProcess
from userstream.events import ActivityInput
from userstream.rpc.acl import CursorRefusedError

pytestmark = pytest.mark.integration


def page_event(organization_id: str = "acme") -> ActivityInput:
    return ActivityInput(type="page.updated", entity_id="p1", organization_id=organization_id)


def before(cursor: str) -> str:
    return str(int(cursor) - 1)


async def test_subject_at_cursors_around_a_grant_an_update_and_a_revoke(
    acl: RunningAcl, activity: RunningActivity
) -> None:
    start = await activity.client.get_cursor()
    granted = await acl.client.grant_membership("alice", "acme", "member")
    other = await activity.client.record(page_event())
    updated = await acl.client.update_membership("alice", "acme", "admin")
    await activity.client.record(page_event())
    revoked = await acl.client.revoke_membership("alice", "acme")
    after = await activity.client.record(page_event())

    expected = {
        start: {},
        before(granted.cursor): {},
        granted.cursor: {"acme": "member"},
        other.cursor: {"acme": "member"},
        before(updated.cursor): {"acme": "member"},
        updated.cursor: {"acme": "admin"},
        before(revoked.cursor): {"acme": "admin"},
        revoked.cursor: {},
        after.cursor: {},
    }
    for cursor, memberships in expected.items():
        subject = await acl.client.get_subject("alice", cursor)
        assert (subject.memberships, subject.cursor) == (memberships, cursor), cursor


async def test_a_bare_sequence_is_a_position_in_the_current_log(acl: RunningAcl) -> None:
    granted = await acl.client.grant_membership("alice", "acme", "member")
    sequence = parse_cursor(granted.cursor).sequence
    subject = await acl.client.get_subject("alice", str(sequence))
    assert (subject.memberships, subject.cursor) == ({"acme": "member"}, granted.cursor)
    assert (await acl.client.get_subject("alice", "0")).memberships == {}


async def test_a_cursor_recorded_elsewhere_meanwhile_is_answered_after_a_barrier(
    acl: RunningAcl, activity: RunningActivity
) -> None:
    recorded = await activity.client.record(
        ActivityInput(type="membership.created", user_id="bob", organization_id="acme", role="member")
    )
    assert (await acl.client.get_subject("bob", recorded.cursor)).memberships == {"acme": "member"}


async def test_now_is_the_head_of_the_log(acl: RunningAcl, activity: RunningActivity) -> None:
    await acl.client.grant_membership("alice", "acme", "member")
    head = await activity.client.record(page_event())
    subject = await acl.client.get_subject("alice", "now")
    assert (subject.memberships, subject.cursor) == ({"acme": "member"}, head.cursor)
    # The latest state reflects at least what "now" confirmed.
    assert int((await acl.client.get_subject("alice")).cursor) >= int(head.cursor)


async def test_cursors_from_another_log_or_ahead_of_the_head_are_unknown(
    acl: RunningAcl, activity: RunningActivity
) -> None:
    head = parse_cursor(await activity.client.get_cursor())
    other_log = str((head.log_id + 1) * SEQUENCE_SPAN + head.sequence)
    ahead = str(head.log_id * SEQUENCE_SPAN + head.sequence + 5)
    for cursor in (other_log, ahead):
        with pytest.raises(CursorRefusedError) as refused:
            await acl.client.get_subject("alice", cursor)
        assert refused.value.reason == "cursor-unknown"


async def test_history_older_than_the_log_is_expired(nats_server: NatsServerProcess) -> None:
    activity = await start_activity(nats_server.url, RETENTION_MAX_MSGS="5")
    acl = await start_acl(nats_server.url)
    try:
        granted = await acl.client.grant_membership("alice", "acme", "member")
        await acl.client.revoke_membership("alice", "acme")
        for _ in range(6):
            await activity.client.record(page_event())
        await acl.service.maintenance.tick()  # prunes what the log no longer holds
        with pytest.raises(CursorRefusedError) as refused:
            await acl.client.get_subject("alice", granted.cursor)
        assert refused.value.reason == "cursor-expired"
        # Positions the log still covers are answered.
        head = await activity.client.get_cursor()
        assert (await acl.client.get_subject("alice", before(head))).memberships == {}
    finally:
        await acl.close()
        await activity.client.close()
        await activity.service.stop()
