"""At the token's `exp` the stream ends with `close` (token-expired); a fresh token and the last cursor lose nothing."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.sse import request_error
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


async def test_close_at_expiry_then_resume_with_a_fresh_token(stack: Stack) -> None:
    await stack.acl.grant_membership("alice", "acme", "member")
    # `exp` has whole seconds: expire at the start of the second after next.
    expires_at = int(time.time()) + 2
    headers = {"Authorization": f"Bearer {stack.token('alice', ttl=expires_at - time.time())}"}
    stream = await stack.stream("alice", headers=headers)
    assert (await stream.next_event()).event == "offset"
    before = await stack.page("acme", "before")
    (change,) = await stream.changes(1)
    assert change.id == before
    recording = asyncio.get_running_loop().create_task(_record_until(stack, expires_at + 1.0))
    events = await stream.read_to_end(timeout=6)
    closed_at = time.time()
    closes = [event for event in events if event.event == "close"]
    assert closes, [e.event for e in events]
    assert closes[-1].json() == {"reason": "token-expired"}
    assert events[-1] is closes[-1], "close is the last event"
    assert expires_at - 0.1 <= closed_at < expires_at + 1.5
    received_before_close = [e.id for e in events if e.event == "change"]
    last = stream.last_event_id
    await stream.close()
    recorded = await recording
    # A stale token is refused; a fresh one resumes from the last cursor without a gap.
    stale = await request_error(stack.base_url, headers={**headers, "Last-Event-ID": last or ""})
    assert stale.status == 401
    async with await stack.stream("alice", last_event_id=last) as resumed:
        rest = await resumed.change_ids_until(recorded[-1])
    assert received_before_close + rest == recorded
    assert last is not None


async def _record_until(stack: Stack, deadline: float) -> list[str]:
    cursors = []
    while time.time() < deadline:
        cursors.append(await stack.page("acme", f"p{len(cursors)}"))
        await asyncio.sleep(0.05)
    return cursors
