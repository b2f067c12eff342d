from __future__ import annotations

import pytest

from tests.support.sse import open_stream
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


async def test_live_grant_then_revoke(stack: Stack) -> None:
    stream = await open_stream(stack.base_url, headers=stack.auth("bob"))
    assert (await stream.next_event()).event == "offset"
    await stack.page("acme", "before")
    grant = await stack.acl.grant_membership("bob", "acme", "member")
    during = await stack.page("acme", "during")
    revoke = await stack.acl.revoke_membership("bob", "acme")
    await stack.page("acme", "after")
    marker_grant = await stack.acl.grant_membership("bob", "marker", "member")
    events = await stream.events_until(lambda e: e.id == marker_grant.cursor)
    ids = [e.id for e in events if e.event == "change"]
    assert ids == [grant.cursor, during, revoke.cursor, marker_grant.cursor]
    await stream.close()


async def test_resume_across_grant_inside_gap(stack: Stack) -> None:
    stream = await open_stream(stack.base_url, headers=stack.auth("carol"))
    offset = await stream.next_event()
    await stream.close()
    skipped = await stack.page("globex", "x")
    grant = await stack.acl.grant_membership("carol", "globex", "admin")
    seen = await stack.page("globex", "y")
    resumed = await open_stream(stack.base_url, headers={**stack.auth("carol"), "Last-Event-ID": offset.id or ""})
    events = await resumed.events_until(lambda e: e.event == "offset")
    assert [e.id for e in events if e.event == "change"] == [grant.cursor, seen]
    assert skipped not in [e.id for e in events]
    assert events[-1].json() == {"cursor": seen, "resumed": True}
    live = await stack.page("globex", "z")
    (change,) = await resumed.changes(1)
    assert change.id == live
    await resumed.close()
