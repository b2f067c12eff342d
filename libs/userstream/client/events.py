"""The typed events of a user's stream (CONTRACT §5), as the SDK yields them."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

MEMBERSHIP = "membership"
ORGANIZATION = "organization"
Action = Literal["create", "update", "delete"]


class Tx(msgspec.Struct, rename="camel", frozen=True):
    """Transaction metadata of a change: ``source_id`` recognises the echo of one's own write."""

    transaction_id: str | None = None
    source_id: str | None = None
    changed_field: str | None = None


class Change(msgspec.Struct, rename="camel", frozen=True, kw_only=True):
    """One permitted change. ``cursor`` (the SSE ``id:``, also ``activityId``) is opaque: store it, never compute."""

    activity_id: str
    type: str
    action: Action
    entity_type: str | None
    resource_type: str | None
    entity_id: str | None
    organization_id: str
    user_id: str | None
    created_at: str
    changed_keys: tuple[str, ...] | None = None
    tx: Tx | None = None
    data: dict[str, Any] | None = None

    @property
    def cursor(self) -> str:
        return self.activity_id

    @property
    def is_membership(self) -> bool:
        return self.resource_type == MEMBERSHIP

    @property
    def is_organization(self) -> bool:
        return self.entity_type == ORGANIZATION

    def is_echo_of(self, source_id: str | None) -> bool:
        """Whether this is the echo of a write that carried ``source_id``."""
        return source_id is not None and self.tx is not None and self.tx.source_id == source_id


class Offset(msgspec.Struct, frozen=True):
    """The switch to live: everything up to ``cursor`` has been delivered. Sent once per connection."""

    cursor: str
    resumed: bool


class Closed(msgspec.Struct, frozen=True):
    """The server ended the connection (``shutdown``, ``token-expired``, ``slow-consumer``…); the SDK resumes."""

    reason: str


class MustRefetch(msgspec.Struct, frozen=True):
    """The cursor cannot be resumed (``cursor-expired`` / ``cursor-unknown``): reload; the stream restarts at now."""

    reason: str


StreamEvent = Change | Offset | Closed | MustRefetch

_CHANGE = msgspec.json.Decoder(Change)
_OFFSET = msgspec.json.Decoder(Offset)
_REASON = msgspec.json.Decoder(dict[str, Any])


class EventDecodeError(ValueError):
    """The server sent an event this SDK cannot read."""


def decode_event(name: str, data: str) -> StreamEvent | None:
    """The typed event for an SSE message; None for pings and event kinds this SDK does not know."""
    try:
        if name == "change":
            return _CHANGE.decode(data)
        if name == "offset":
            return _OFFSET.decode(data)
        if name in ("close", "must-refetch"):
            reason = str(_REASON.decode(data).get("reason", "unknown"))
            return Closed(reason) if name == "close" else MustRefetch(reason)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise EventDecodeError(f"unreadable `{name}` event: {error}") from error
    return None


def to_json(event: StreamEvent) -> dict[str, Any]:
    """``{"event", "id", "data"}``: one JSON line of ``userstream tail --json``."""
    if isinstance(event, Change):
        return {"event": "change", "id": event.cursor, "data": msgspec.to_builtins(event)}
    if isinstance(event, Offset):
        return {"event": "offset", "id": event.cursor, "data": msgspec.to_builtins(event)}
    name = "close" if isinstance(event, Closed) else "must-refetch"
    return {"event": name, "id": None, "data": {"reason": event.reason}}
