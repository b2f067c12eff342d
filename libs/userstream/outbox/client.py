"""Recording an activity from a Python application: one outbox row, inside the application's transaction.

The row commits or rolls back with the application's own change (CONTRACT §7);
the relay records it in the log once committed. Validation happens in the relay
(a row it refuses lands in ``userstream.outbox_rejected``): the helper only
inserts, so it never adds a round trip beyond the insert itself.

    with connection.transaction():
        connection.execute("UPDATE pages SET title = %s WHERE id = %s", (title, page_id))
        record(connection, ActivityInput(type="page.updated", organization_id="acme", entity_id=page_id))
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

import psycopg

from userstream.events.model import ActivityInput

_COLUMNS = (
    "type, organization_id, entity_id, user_id, role, data, changed_keys,"
    " transaction_id, source_id, changed_field, idempotency_key, public, created_at"
)
_PSYCOPG_INSERT = (
    f"INSERT INTO userstream.outbox ({_COLUMNS}) VALUES"  # noqa: S608  # constant text, values are parameters
    " (%s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, coalesce(%s, now())) RETURNING id"
)
_ASYNCPG_INSERT = (
    f"INSERT INTO userstream.outbox ({_COLUMNS}) VALUES"  # noqa: S608  # constant text, values are parameters
    " ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11, $12, coalesce($13, now())) RETURNING id"
)


class AsyncpgConnection(Protocol):
    """The part of ``asyncpg.Connection`` the helper uses."""

    async def fetchval(self, query: str, *args: Any) -> Any: ...


def row_values(activity: ActivityInput) -> tuple[object, ...]:
    """The outbox columns for ``activity``, in ``_COLUMNS`` order; empty fields become NULL."""
    tx = activity.tx
    created_at: datetime | None = activity.created_at
    return (
        activity.type,
        activity.organization_id or None,
        activity.entity_id or None,
        activity.user_id or None,
        activity.role or None,
        activity.data_json or None,
        list(activity.changed_keys) or None,
        (tx.transaction_id or None) if tx else None,
        (tx.source_id or None) if tx else None,
        (tx.changed_field or None) if tx else None,
        activity.idempotency_key or None,
        activity.public,
        created_at,
    )


def record(connection: psycopg.Connection[Any], activity: ActivityInput) -> int:
    """Insert ``activity`` into the outbox on ``connection`` (in its current transaction); returns the row's id."""
    row = connection.execute(_PSYCOPG_INSERT, row_values(activity)).fetchone()
    assert row is not None
    row_id: int = row[0]
    return row_id


async def record_async(connection: psycopg.AsyncConnection[Any] | AsyncpgConnection, activity: ActivityInput) -> int:
    """``record`` for asyncio applications: a psycopg ``AsyncConnection`` or an asyncpg connection."""
    if isinstance(connection, psycopg.AsyncConnection):
        cursor = await connection.execute(_PSYCOPG_INSERT, row_values(activity))
        row = await cursor.fetchone()
        assert row is not None
        row_id: int = row[0]
        return row_id
    return int(await connection.fetchval(_ASYNCPG_INSERT, *row_values(activity)))
