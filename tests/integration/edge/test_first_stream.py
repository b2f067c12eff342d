from __future__ import annotations

import pytest

from tests.support.sse import open_stream
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


async def test_member_receives_org_events_live(stack: Stack) -> None:
    await stack.acl.grant_membership("alice", "acme", "member")
    stream = await open_stream(stack.base_url, headers=stack.auth("alice"))
    offset = await stream.next_event()
    assert offset.event == "offset"
    assert offset.json()["resumed"] is False
    cursor = await stack.page("acme")
    (change,) = await stream.changes(1)
    assert change.id == cursor
    body = change.json()
    assert body["activityId"] == cursor
    assert body["type"] == "page.updated"
    await stream.close()
