"""The relay's PostgreSQL session: the advisory lock, reading rows, and recording progress.

One connection does everything. It holds the session-level advisory lock that
makes this relay the active one, so every write the relay makes goes through
the session that owns the lock: a relay whose session was cut (and whose lock
another relay may hold by now) cannot delete a row or move its progress.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from userstream.outbox.rows import ROW_COLUMNS, SELECT_COLUMNS, OutboxRow

# The lock every relay of one database competes for (advisory locks are per database).
_LOCK_SQL = "SELECT pg_try_advisory_lock(hashtext('userstream.relay'))"
# The server notices a relay host that vanished (no FIN, no RST) within about 5 + 2 * 3 s and ends
# its session, which releases the lock: takeover stays within 15 s without a clean exit.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}
_SERVER_KEEPALIVES = "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3"
# `id <> ALL(…)`: rows of the batch still being published are read past (see ``fetch``).
_FETCH_TRANSACTION = (
    f"SELECT {SELECT_COLUMNS} FROM userstream.outbox"  # noqa: S608
    " WHERE xid = %s::text::xid8 AND id <> ALL(%b::bigint[]) ORDER BY id LIMIT %s"
)
_ROWS = f"SELECT {SELECT_COLUMNS} FROM userstream.outbox WHERE id = ANY(%b) ORDER BY xid, id"  # noqa: S608
_FETCH = (
    f"SELECT {SELECT_COLUMNS} FROM userstream.outbox"  # noqa: S608
    " WHERE id <> ALL(%b::bigint[]) ORDER BY xid, id LIMIT %s"
)
_MOVE_REJECTED = (
    f"WITH moved AS (DELETE FROM userstream.outbox WHERE id = ANY(%s) RETURNING {ROW_COLUMNS})"  # noqa: S608
    f" INSERT INTO userstream.outbox_rejected ({ROW_COLUMNS}, error)"
    f" SELECT {', '.join(f'moved.{name.strip()}' for name in ROW_COLUMNS.split(','))}, why.error"
    " FROM moved JOIN unnest(%s::bigint[], %s::text[]) AS why(id, error) ON why.id = moved.id"
    " ON CONFLICT (id) DO NOTHING"
)


@dataclass(frozen=True, slots=True)
class Inflight:
    """The batch being published: enough to find its rows in the log after a crash.

    Only the row ids are kept; their message ids and subjects follow from the rows themselves,
    which stay in the outbox until the batch is finished.
    """

    ids: tuple[int, ...]
    after_sequence: int  # every message of the batch has a greater stream sequence
    attempted_at: datetime  # the latest publish attempt (this host's clock)


@dataclass(frozen=True, slots=True)
class RelayState:
    outbox_id: str
    last_xid: int | None
    inflight: Inflight | None


class SchemaMissingError(Exception):
    """The database has no outbox yet (``userstream outbox install`` was not run)."""


class OutboxSession:
    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self._connection = connection

    @classmethod
    async def connect(cls, dsn: str, timeout: float) -> OutboxSession:
        # A DSN or URI; these settings are merged into it (and win over its own).
        conninfo = psycopg.conninfo.make_conninfo(dsn, connect_timeout=max(1, int(timeout)), **_KEEPALIVES)
        connection = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        try:
            await connection.execute(_SERVER_KEEPALIVES)
        except BaseException:
            # Failed or cancelled (the relay stopping) before the session owns it: never leave it open.
            await asyncio.shield(connection.close())
            raise
        return cls(connection)

    @property
    def connected(self) -> bool:
        return not self._connection.closed and not self._connection.broken

    async def close(self) -> None:
        await self._connection.close()

    async def try_lock(self) -> bool:
        cursor = await self._connection.execute(_LOCK_SQL)
        row = await cursor.fetchone()
        return bool(row and row[0])

    async def state(self) -> RelayState:
        try:
            cursor = await self._connection.execute(
                "SELECT s.outbox_id::text, r.last_xid::text, r.inflight_ids, r.inflight_after_seq, r.inflight_at"
                " FROM userstream.outbox_schema s, userstream.relay_state r"
            )
        except psycopg.errors.UndefinedTable:
            raise SchemaMissingError("no userstream outbox in this database: run `userstream outbox install`") from None
        row = await cursor.fetchone()
        if row is None:
            raise SchemaMissingError("the userstream outbox is incomplete: run `userstream outbox install` again")
        outbox_id, last_xid, ids, after_sequence, attempted_at = row
        inflight = Inflight(tuple(ids), after_sequence, attempted_at) if ids else None
        return RelayState(outbox_id, int(last_xid) if last_xid is not None else None, inflight)

    async def fetch(
        self, limit: int, *, continuing_xid: int | None = None, excluding: Sequence[int] = ()
    ) -> list[OutboxRow]:
        """Committed rows in relay order; first the rest of ``continuing_xid``'s rows, if any are left.

        ``excluding``: rows of a batch still being published (read past as if already deleted).
        """
        rows: list[OutboxRow] = []
        skip = list(excluding)
        if continuing_xid is not None:
            cursor = await self._connection.execute(_FETCH_TRANSACTION, (str(continuing_xid), skip, limit), binary=True)
            rows = [OutboxRow.from_record(record) for record in await cursor.fetchall()]
            if rows:
                # Nothing else until that transaction is through: its rows stay contiguous in the log.
                return rows
        # Binary results: timestamps and numbers arrive ready to use, not as text to parse.
        cursor = await self._connection.execute(_FETCH, (skip, limit), binary=True)
        return [OutboxRow.from_record(record) for record in await cursor.fetchall()]

    async def rows(self, ids: Sequence[int]) -> list[OutboxRow]:
        """The rows with these ids still in the outbox, in relay order."""
        cursor = await self._connection.execute(_ROWS, (list(ids),), binary=True)
        return [OutboxRow.from_record(record) for record in await cursor.fetchall()]

    async def begin_batch(self, inflight: Inflight | None, rejected: Sequence[tuple[int, str]]) -> None:
        """Move refused rows out and note the batch about to be published, in one transaction."""
        async with self._connection.transaction():
            await self._move_rejected(rejected)
            if inflight is not None:
                await self._set_inflight(inflight)

    async def finish_batch(
        self, recorded: Sequence[int], rejected: Sequence[tuple[int, str]], last_xid: int | None
    ) -> None:
        """Delete recorded rows, move refused ones, clear the in-flight note: one transaction."""
        async with self._connection.transaction():
            if recorded:
                await self._connection.execute("DELETE FROM userstream.outbox WHERE id = ANY(%b)", (list(recorded),))
            await self._move_rejected(rejected)
            await self._connection.execute(
                "UPDATE userstream.relay_state SET last_xid = coalesce(%s::text::xid8, last_xid),"
                " inflight_ids = NULL, inflight_after_seq = NULL, inflight_at = NULL, updated_at = now()",
                (str(last_xid) if last_xid is not None else None,),
            )

    async def _set_inflight(self, inflight: Inflight) -> None:
        await self._connection.execute(
            # %b: the ids travel as a binary array, far cheaper to build than its text form.
            "UPDATE userstream.relay_state SET inflight_ids = %b, inflight_after_seq = %s, inflight_at = %s,"
            " updated_at = now()",
            (list(inflight.ids), inflight.after_sequence, inflight.attempted_at),
        )

    async def _move_rejected(self, rejected: Sequence[tuple[int, str]]) -> None:
        if not rejected:
            return
        ids = [row_id for row_id, _ in rejected]
        errors = [error for _, error in rejected]
        await self._connection.execute(_MOVE_REJECTED, (ids, ids, errors))
