"""GetSubjects: several GetSubject questions in one call (the edge's connect batches), answered in order."""

from __future__ import annotations

import pytest

from tests.conftest import RunningActivity
from tests.integration.acl.conftest import RunningAcl
from userstream.cursor import SEQUENCE_SPAN, parse_cursor
from userstream.errors import InvalidArgumentError
from userstream.rpc.acl import CursorRefusedError, Subject

pytestmark = pytest.mark.integration


async def test_answers_in_order_with_refusals_per_item(acl: RunningAcl, activity: RunningActivity) -> None:
    start = await activity.client.get_cursor()
    granted = await acl.client.grant_membership("alice", "acme", "member")
    await acl.client.grant_membership("bob", "globex", "admin")
    foreign = str((parse_cursor(start).log_id + 1) * SEQUENCE_SPAN + 1)

    answers = await acl.client.get_subjects(
        [
            ("alice", start),
            ("alice", "now"),
            ("bob", ""),
            ("nobody", "now"),
            ("alice", foreign),
            ("bob", granted.cursor),
        ]
    )

    assert isinstance(answers[0], Subject)
    assert answers[0].memberships == {}
    assert answers[0].cursor == start
    assert isinstance(answers[1], Subject)
    assert answers[1].memberships == {"acme": "member"}
    assert isinstance(answers[2], Subject)
    assert answers[2].memberships == {"globex": "admin"}
    assert isinstance(answers[3], Subject)
    assert answers[3].memberships == {}
    assert answers[3].system_role == "user"
    assert isinstance(answers[4], CursorRefusedError)
    assert answers[4].reason == "cursor-unknown"
    assert isinstance(answers[5], Subject)
    assert answers[5].memberships == {}  # bob's grant came after alice's
    # Each answer equals what GetSubject says alone.
    assert answers[1] == await acl.client.get_subject("alice", answers[1].cursor)


async def test_a_bad_item_fails_the_call_naming_it(acl: RunningAcl) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        await acl.client.get_subjects([("alice", "now"), ("not valid!", "now")])
    assert raised.value.field == "requests[1].user_id"
    with pytest.raises(InvalidArgumentError) as raised:
        await acl.client.get_subjects([("alice", "yesterday")])
    assert raised.value.field == "requests[0].at_cursor"


async def test_an_empty_batch_is_an_empty_answer(acl: RunningAcl) -> None:
    assert await acl.client.get_subjects([]) == []
