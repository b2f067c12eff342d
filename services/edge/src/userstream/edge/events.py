"""Events as the edge fans them out: decoded and framed once per worker.

A stored body is decoded only as far as routing and permission checks need
(``EventView``); the ``change`` frame is the stored body with the cursor spliced
in, never re-encoded.
"""

from __future__ import annotations

from enum import IntEnum

import msgspec
import structlog

from userstream.cursor import CursorCodec
from userstream.edge.sse import change_frame
from userstream.eventlog.reader import StoredMessage
from userstream.events.model import ACTION_BY_SUFFIX, Action
from userstream.events.wire import MEMBERSHIP_DECODER, MEMBERSHIP_RESOURCE, VIEW_DECODER, change_payload
from userstream.policy import ORGANIZATION

log = structlog.get_logger("userstream.edge")


class EventKind(IntEnum):
    MEMBERSHIP = 0
    ORGANIZATION = 1
    PRODUCT = 2


class LiveEvent:
    """One event of the log, ready to be offered to every connection on its channel."""

    __slots__ = (
        "action",
        "body",
        "cursor",
        "entity_type",
        "frame",
        "is_organization_deletion",
        "kind",
        "organization_id",
        "public",
        "repaired",
        "role",
        "sequence",
        "stored_at",
        "subject",
        "user_id",
    )

    def __init__(
        self,
        *,
        sequence: int,
        subject: str,
        cursor: str,
        kind: EventKind,
        action: Action,
        entity_type: str,
        organization_id: str,
        user_id: str | None,
        role: str | None,
        public: bool,
        body: bytes,
    ) -> None:
        self.sequence = sequence
        self.subject = subject
        self.cursor = cursor
        self.kind = kind
        self.action = action
        self.entity_type = entity_type
        self.organization_id = organization_id
        self.user_id = user_id
        self.role = role
        self.public = public
        self.body = body
        self.is_organization_deletion = kind is EventKind.ORGANIZATION and action is Action.DELETE
        # Found by a gap repair (missed by the live flow); see Connection.offer.
        self.repaired = False
        # When the log stored it (seconds since the epoch), for the lag metrics; known for live events only.
        self.stored_at: float | None = None
        self.frame = change_frame(cursor.encode(), change_payload(cursor, body))

    def frame_with_role(self, role: str) -> bytes:
        """The frame of a ``membership.deleted`` recorded without a role, completed with the one the member had."""
        data = msgspec.json.decode(self.body)
        data["data"] = {**(data.get("data") or {}), "role": role}
        return change_frame(self.cursor.encode(), change_payload(self.cursor, msgspec.json.encode(data)))


def decode_event(message: StoredMessage, codec: CursorCodec) -> LiveEvent | None:
    """The event for a stored message; None (logged) if the body is not one userstream wrote."""
    try:
        view = VIEW_DECODER.decode(message.data)
        action = ACTION_BY_SUFFIX[view.type.rpartition(".")[2]]
        role = None
        if view.resource_type == MEMBERSHIP_RESOURCE:
            kind = EventKind.MEMBERSHIP
            entity_type = MEMBERSHIP_RESOURCE
            if view.data is not None:
                role = MEMBERSHIP_DECODER.decode(view.data).role
        else:
            entity_type = view.entity_type or ""
            kind = EventKind.ORGANIZATION if entity_type == ORGANIZATION else EventKind.PRODUCT
    except (msgspec.DecodeError, KeyError):
        log.exception("edge.undecodable_event", sequence=message.sequence, subject=message.subject)
        return None
    return LiveEvent(
        sequence=message.sequence,
        subject=message.subject,
        cursor=codec.encode(message.sequence),
        kind=kind,
        action=action,
        entity_type=entity_type,
        organization_id=view.organization_id,
        user_id=view.user_id,
        role=role,
        public=message.public,
        body=message.data,
    )
