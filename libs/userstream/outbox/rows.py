"""An outbox row as the relay reads it, and the activity input it stands for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from userstream.events.model import ActivityInput, Tx

# The relay's SELECT list, in the order of ``OutboxRow``'s fields. `data::text` hands the JSON
# over as text (validated and recorded as is, numbers intact), `xid::text` the 64-bit xid8.
# Both are renamed: an output column named `xid` would make `ORDER BY xid` sort the text.
SELECT_COLUMNS = (
    "id, xid::text AS xid_text, type, organization_id, entity_id, user_id, role, data::text AS data_text, changed_keys,"
    " transaction_id, source_id, changed_field, idempotency_key, public, created_at"
)
# Columns copied to userstream.outbox_rejected as they are.
ROW_COLUMNS = (
    "id, xid, type, organization_id, entity_id, user_id, role, data, changed_keys,"
    " transaction_id, source_id, changed_field, idempotency_key, public, created_at"
)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    xid: int
    type: str
    organization_id: str | None
    entity_id: str | None
    user_id: str | None
    role: str | None
    data: str | None
    changed_keys: list[str | None] | None
    transaction_id: str | None
    source_id: str | None
    changed_field: str | None
    idempotency_key: str | None
    public: bool
    created_at: datetime

    @classmethod
    def from_record(cls, record: tuple[object, ...]) -> OutboxRow:
        values = list(record)
        values[1] = int(str(values[1]))
        return cls(*values)  # type: ignore[arg-type]  # the SELECT list above fixes each column's type

    def activity_input(self, default_idempotency_key: str = "") -> ActivityInput:
        """The row as the activity service would receive it over gRPC (absent = empty).

        ``default_idempotency_key`` stands in for a row without one (the relay passes the row's own identity).
        """
        tx = None
        if self.transaction_id is not None or self.source_id is not None or self.changed_field is not None:
            tx = Tx(self.transaction_id or "", self.source_id or "", self.changed_field or "")
        return ActivityInput(
            type=self.type,
            entity_id=self.entity_id or "",
            organization_id=self.organization_id or "",
            user_id=self.user_id or "",
            role=self.role or "",
            data_json=self.data or "",
            # A NULL inside the array is an empty key, which validation refuses by name.
            changed_keys=tuple(key or "" for key in self.changed_keys or ()),
            tx=tx,
            idempotency_key=self.idempotency_key or default_idempotency_key,
            public=self.public,
            created_at=self.created_at,
        )


def row_message_id(outbox_id: str, row_id: int) -> str:
    """The Nats-Msg-Id of a row recorded without an ``idempotency_key`` (CONTRACT §7.6)."""
    return f"outbox-{outbox_id}-{row_id}"
