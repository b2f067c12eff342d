"""The anonymous /public/stream: only changes recorded public, of entity types the policy marks public."""

from __future__ import annotations

import pytest

from tests.support.sse import open_stream
from tests.support.stack import Stack
from userstream.errors import InvalidArgumentError

pytestmark = pytest.mark.integration


async def test_only_public_changes_of_public_types_live_and_resumed(stack: Stack) -> None:
    async with await open_stream(stack.base_url, "/public/stream") as stream:
        assert stream.response.status == 200
        offset = await stream.next_event()
        assert offset.event == "offset"
        assert offset.json()["resumed"] is False
        public = []
        public.append(await stack.page("acme", "launch", action="created", public=True))
        await stack.page("acme", "draft")  # not marked public: never on the public stream
        await stack.entity("organization", "acme", "updated")
        await stack.entity("attachment", "acme", "created")
        await stack.acl.grant_membership("alice", "acme", "admin")
        await stack.membership("bob", "globex", "created", "member")
        public.append(await stack.page("globex", "pricing", action="updated", public=True))
        await stack.page("globex", "internal", action="deleted")
        public.append(await stack.page("initech", "launch", action="deleted", public=True))
        assert await stream.change_ids_until(public[-1]) == public
        change = stream.last_event_id
        assert change == public[-1]
    # Resume after the first public change: the rest, then the offset.
    async with await open_stream(stack.base_url, "/public/stream", headers={"Last-Event-ID": public[0]}) as resumed:
        events = await resumed.events_until(lambda e: e.event == "offset")
        assert [e.id for e in events if e.event == "change"] == public[1:]
        assert events[-1].json() == {"cursor": public[-1], "resumed": True}
    async with await open_stream(stack.base_url, "/public/stream", query={"offset": offset.id or ""}) as by_query:
        assert await by_query.change_ids_until(public[-1]) == public


async def test_public_needs_no_token_and_ignores_one(stack: Stack) -> None:
    async with await open_stream(stack.base_url, "/public/stream", headers={"Authorization": "Bearer garbage"}) as s:
        assert (await s.next_event()).event == "offset"


async def test_a_type_the_policy_does_not_mark_public_cannot_be_recorded_public(stack: Stack) -> None:
    with pytest.raises(InvalidArgumentError):
        await stack.entity("attachment", "acme", "created", public=True)
