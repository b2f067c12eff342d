"""The exact bytes and JSON of `change` events for every kind of event (CONTRACT §5, field by field)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support.sse import SSEEvent
from tests.support.stack import Stack
from userstream.events.model import Tx

pytestmark = pytest.mark.integration

FIELDS = [
    "activityId",
    "type",
    "action",
    "entityType",
    "resourceType",
    "entityId",
    "organizationId",
    "userId",
    "createdAt",
    "changedKeys",
    "tx",
    "data",
]
CREATED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _body(event: SSEEvent) -> dict[str, Any]:
    assert event.event == "change"
    body: dict[str, Any] = event.json()
    assert list(body) == FIELDS, "every field present, in the contract's order"
    assert body["activityId"] == event.id
    assert CREATED_AT.match(body["createdAt"]), body["createdAt"]
    return body


async def test_product_organization_and_membership_events(stack: Stack) -> None:
    await stack.acl.grant_membership("alice", "acme", "admin")
    stream = await stack.stream("alice")
    assert (await stream.next_event()).event == "offset"
    moment = datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=UTC)

    full = await stack.page(
        "acme",
        "page-1",
        user_id="bob",
        data_json='{"title": "Hello", "n": 12345678901234567890, "nested": {"a": [1, 2.5, null]}}',
        changed_keys=("title", "n"),
        tx=Tx(transaction_id="t-1", source_id="tab-9", changed_field="title"),
        created_at=moment,
    )
    bare = await stack.entity("attachment", "acme", "deleted", entity_id="att-1")
    organization = await stack.entity("organization", "acme", "updated", data_json='{"name": "Acme"}')
    role_change = await stack.membership("alice", "acme", "updated", "member")
    revoked = await stack.membership("alice", "acme", "deleted")  # no role: filled with the one held (member)
    await stack.acl.get_subject("alice", "now")  # acl reflects a direct event "within moments" (CONTRACT §2)
    granted = await stack.acl.grant_membership("alice", "acme", "admin")
    revoked_by_acl = await stack.acl.revoke_membership("alice", "acme")
    ids = [full, bare, organization, role_change, revoked, granted.cursor, revoked_by_acl.cursor]
    events = await stream.events_until(lambda e: e.id == revoked_by_acl.cursor)
    changes = [event for event in events if event.event == "change"]
    assert [event.id for event in changes] == ids

    assert _body(changes[0]) == {
        "activityId": full,
        "type": "page.updated",
        "action": "update",
        "entityType": "page",
        "resourceType": None,
        "entityId": "page-1",
        "organizationId": "acme",
        "userId": "bob",
        "createdAt": "2026-03-04T05:06:07.891Z",
        "changedKeys": ["title", "n"],
        "tx": {"transactionId": "t-1", "sourceId": "tab-9", "changedField": "title"},
        "data": {"title": "Hello", "n": 12345678901234567890, "nested": {"a": [1, 2.5, None]}},
    }
    # Large integers survive as written (no float rounding on the way).
    assert '"n":12345678901234567890' in changes[0].data.replace(" ", "")

    bare_body = _body(changes[1])
    assert bare_body == {
        "activityId": bare,
        "type": "attachment.deleted",
        "action": "delete",
        "entityType": "attachment",
        "resourceType": None,
        "entityId": "att-1",
        "organizationId": "acme",
        "userId": None,
        "createdAt": bare_body["createdAt"],
        "changedKeys": None,
        "tx": None,
        "data": None,
    }

    organization_body = _body(changes[2])
    assert organization_body["type"] == "organization.updated"
    assert organization_body["action"] == "update"
    assert organization_body["entityType"] == "organization"
    assert organization_body["resourceType"] is None
    assert organization_body["entityId"] == "acme"  # defaults to the organization id
    assert organization_body["data"] == {"name": "Acme"}

    expected_memberships = [
        (role_change, "membership.updated", "update", "member"),
        (revoked, "membership.deleted", "delete", "member"),
        (granted.cursor, "membership.created", "create", "admin"),
        (revoked_by_acl.cursor, "membership.deleted", "delete", "admin"),
    ]
    for event, (cursor, type_, action, role) in zip(changes[3:], expected_memberships, strict=True):
        body = _body(event)
        assert body["activityId"] == cursor
        assert body["type"] == type_
        assert body["action"] == action
        assert body["entityType"] is None
        assert body["resourceType"] == "membership"
        assert body["entityId"] is None
        assert body["organizationId"] == "acme"
        assert body["userId"] == "alice"
        assert body["data"]["userId"] == "alice"
        assert body["data"]["organizationId"] == "acme"
        assert body["data"]["role"] == role, type_
    await stream.close()


async def test_sse_framing_bytes(stack: Stack) -> None:
    """``retry:`` first, then the offset, then `event`/`id`/`data` lines of each change, blank-line separated."""
    await stack.acl.grant_membership("alice", "acme", "member")
    stream = await stack.stream("alice")
    offset = await stream.next_event()
    cursor = await stack.page("acme")
    await stream.changes(1)
    raw = bytes(stream.raw)
    assert raw.startswith(b"retry: 3000\n\n"), raw[:40]
    offset_frame = b'event: offset\nid: %s\ndata: {"cursor":"%s","resumed":false}\n\n' % (
        (offset.id or "").encode(),
        (offset.id or "").encode(),
    )
    assert raw[len(b"retry: 3000\n\n") :].startswith(offset_frame)
    change = re.search(rb"event: change\nid: (\d+)\ndata: (\{.*\})\n\n", raw)
    assert change is not None
    assert change.group(1).decode() == cursor
    assert json.loads(change.group(2))["activityId"] == cursor
    await stream.close()


async def test_membership_deleted_role_is_filled_when_replayed_too(stack: Stack) -> None:
    await stack.acl.grant_membership("alice", "acme", "admin")
    stream = await stack.stream("alice")
    start = (await stream.next_event()).id
    await stream.close()
    revoked = await stack.membership("alice", "acme", "deleted")
    async with await stack.stream("alice", last_event_id=start) as resumed:
        (change,) = await resumed.changes(1)
        assert change.id == revoked
        assert _body(change)["data"] == {"userId": "alice", "organizationId": "acme", "role": "admin"}
