"""The JSON form of an event, encoded once when it is recorded.

The body stored in the log is the stream's ``change`` payload (CONTRACT §5)
without ``activityId``, which is only known once the log assigns the sequence.
The edge therefore builds an SSE frame by splicing the cursor in front of the
stored bytes, without decoding or re-encoding the event.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from userstream.events.model import Activity, Kind

MEMBERSHIP_RESOURCE = "membership"


class WireTx(msgspec.Struct, rename="camel"):
    transaction_id: str | None
    source_id: str | None
    changed_field: str | None


class WireBody(msgspec.Struct, rename="camel"):
    """Field order is the order clients see."""

    type: str
    action: str
    entity_type: str | None
    resource_type: str | None
    entity_id: str | None
    organization_id: str
    user_id: str | None
    created_at: str
    changed_keys: tuple[str, ...] | None
    tx: WireTx | None
    data: msgspec.Raw | None


_NULL = msgspec.Raw(b"null")


class EventView(msgspec.Struct, rename="camel"):
    """What routing and permission checks need from a stored body; ``data`` stays undecoded."""

    type: str
    entity_type: str | None
    resource_type: str | None
    organization_id: str
    user_id: str | None
    # msgspec decodes `Raw | None` as "null only" and rejects an object, so the
    # raw text (possibly `null`) is kept here and `data` gives the optional view.
    raw_data: msgspec.Raw = msgspec.field(default=_NULL, name="data")

    @property
    def data(self) -> msgspec.Raw | None:
        """The undecoded ``data`` object, or None when the event has none."""
        return None if self.raw_data == _NULL else self.raw_data


class MembershipData(msgspec.Struct, rename="camel"):
    user_id: str
    organization_id: str
    role: str | None = None


_ENCODER = msgspec.json.Encoder()
VIEW_DECODER = msgspec.json.Decoder(EventView)
MEMBERSHIP_DECODER = msgspec.json.Decoder(MembershipData)


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, as JavaScript's ``Date.toISOString`` writes it."""
    global _last_formatted  # noqa: PLW0603  # a one-entry cache: a batch shares its server time
    last_moment, text = _last_formatted
    if moment != last_moment:
        text = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        _last_formatted = (moment, text)
    return text


_last_formatted: tuple[datetime, str] = (datetime(1970, 1, 1, tzinfo=UTC), "1970-01-01T00:00:00.000Z")


def encode_body(activity: Activity) -> bytes:
    membership = activity.kind is Kind.MEMBERSHIP
    tx = activity.tx
    body = WireBody(
        type=activity.type,
        action=activity.action.value,
        entity_type=None if membership else activity.entity_name,
        resource_type=MEMBERSHIP_RESOURCE if membership else None,
        entity_id=activity.entity_id,
        organization_id=activity.organization_id,
        user_id=activity.user_id,
        created_at=format_timestamp(activity.created_at),
        changed_keys=activity.changed_keys,
        tx=None if tx is None else WireTx(tx.transaction_id, tx.source_id, tx.changed_field),
        data=None if activity.data_json is None else msgspec.Raw(activity.data_json),
    )
    return _ENCODER.encode(body)


def change_payload(cursor: str, body: bytes) -> bytes:
    """The ``change`` event's JSON: ``activityId`` spliced in front of the stored body."""
    return b'{"activityId":"' + cursor.encode() + b'",' + body[1:]
