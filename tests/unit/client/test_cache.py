"""LocalCache: the unified handler's rules, applied to stream events."""

from __future__ import annotations

from typing import Any

from userstream.client import Change, LocalCache, Tx
from userstream.client.events import decode_event, to_json

_counter = iter(range(1, 10_000))


def change(kind: str, action: str, organization: str, entity: str | None = None, **data: Any) -> Change:
    membership = kind == "membership"
    suffix = {"create": "created", "update": "updated", "delete": "deleted"}[action]
    return Change(
        activity_id=str(next(_counter)),
        type=f"{kind}.{suffix}",
        action=action,  # type: ignore[arg-type]
        entity_type=None if membership else kind,
        resource_type="membership" if membership else None,
        entity_id=None if membership else (entity or organization),
        organization_id=organization,
        user_id=data.get("userId") if membership else None,
        created_at="2026-01-01T00:00:00.000Z",
        data=data or None,
    )


def test_entities_are_created_merged_and_deleted() -> None:
    cache = LocalCache()
    cache.apply(change("page", "create", "acme", "p1", title="A", body=""))
    cache.apply(change("page", "update", "acme", "p1", body="hello"))
    cache.apply(change("attachment", "create", "acme", "f1", name="x.pdf"))
    page = cache.entity("page", "p1")
    assert page is not None
    assert page.data == {"title": "A", "body": "hello"}
    assert [e.entity_id for e in cache.entities_of("acme")] == ["p1", "f1"]
    assert [e.entity_id for e in cache.entities_of("acme", "attachment")] == ["f1"]
    cache.apply(change("page", "delete", "acme", "p1"))
    assert cache.entity("page", "p1") is None


def test_an_update_for_an_unknown_entity_creates_it() -> None:
    cache = LocalCache()
    cache.apply(change("page", "update", "acme", "p9", title="late"))
    assert cache.entity("page", "p9") is not None


def test_memberships_come_and_go_and_a_revocation_forgets_the_organization() -> None:
    cache = LocalCache()
    cache.apply(change("membership", "create", "acme", userId="u", organizationId="acme", role="member"))
    cache.apply(change("organization", "update", "acme", name="Acme"))
    cache.apply(change("page", "create", "acme", "p1", title="A"))
    cache.apply(change("page", "create", "globex", "g1", title="G"))
    cache.apply(change("membership", "update", "acme", userId="u", organizationId="acme", role="admin"))
    assert cache.memberships == {"acme": "admin"}
    assert cache.organizations == {"acme": {"name": "Acme"}}
    cache.apply(change("membership", "delete", "acme", userId="u", organizationId="acme", role="admin"))
    assert cache.memberships == {}
    assert cache.organizations == {}
    assert list(cache.entities) == [("page", "g1")]


def test_an_organization_deletion_drops_its_entities_and_clear_forgets_all() -> None:
    cache = LocalCache()
    cache.apply(change("page", "create", "acme", "p1"))
    cache.apply(change("organization", "delete", "acme"))
    assert cache.entities == {}
    cache.apply(change("page", "create", "globex", "g1"))
    assert cache.cursor is not None
    cache.clear()
    assert (cache.entities, cache.cursor) == ({}, None)


def test_wire_events_decode_into_typed_events_and_back() -> None:
    payload = (
        '{"activityId":"58","type":"page.updated","action":"update","entityType":"page","resourceType":null,'
        '"entityId":"p1","organizationId":"acme","userId":null,"createdAt":"2026-01-01T00:00:00.000Z",'
        '"changedKeys":["name"],"tx":{"transactionId":"t","sourceId":"s","changedField":"name"},"data":{"n":1}}'
    )
    event = decode_event("change", payload)
    assert isinstance(event, Change)
    assert event.cursor == "58"
    assert event.tx == Tx("t", "s", "name")
    assert event.is_echo_of("s")
    assert not event.is_echo_of(None)
    assert list(to_json(event)["data"]["changedKeys"]) == ["name"]
    assert decode_event("ping", "{}") is None
    assert decode_event("something-new", "{}") is None
