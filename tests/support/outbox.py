"""Helpers for outbox tests: write transactions, read back what the log holds, wait for the relay."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import nats
import nats.js.errors
import psycopg

from userstream.eventlog.subjects import MSG_ID_HEADER
from userstream.events.model import ActivityInput
from userstream.outbox import record


def outbox_id(dsn: str) -> str:
    with psycopg.connect(dsn) as connection:
        row = connection.execute("SELECT outbox_id::text FROM userstream.outbox_schema").fetchone()
    assert row is not None
    return str(row[0])


def page_change(n: int, org: str = "acme") -> ActivityInput:
    return ActivityInput(type="page.updated", organization_id=org, entity_id=f"p{n % 7}", data_json=f'{{"n": {n}}}')


@dataclass
class Writer:
    """Commits transactions of a few rows each, one after the other, and remembers what committed."""

    dsn: str
    rows_per_transaction: int = 3
    committed: list[list[int]] = field(default_factory=list)  # row ids per transaction, in commit order
    rolled_back: list[int] = field(default_factory=list)
    xids: dict[int, int] = field(default_factory=dict)  # first row id of a transaction → its xid
    _n: int = 0

    def commit_one(self, *, rollback: bool = False) -> None:
        with psycopg.connect(self.dsn) as connection:
            ids: list[int] = []
            with connection.transaction(force_rollback=rollback):
                for _ in range(self.rows_per_transaction):
                    self._n += 1
                    ids.append(record(connection, page_change(self._n)))
                xid = connection.execute("SELECT pg_current_xact_id()::text").fetchone()
                self.xids[ids[0]] = int(xid[0]) if xid else 0
            if rollback:
                self.rolled_back.extend(ids)
            else:
                self.committed.append(ids)

    async def run(self, stop: asyncio.Event, *, interval: float = 0.005) -> None:
        """Commit transactions (every tenth rolled back) until ``stop`` is set, tolerating PostgreSQL outages."""
        count = 0
        while not stop.is_set():
            count += 1
            try:
                await asyncio.to_thread(self.commit_one, rollback=count % 10 == 0)
            except psycopg.OperationalError:
                await asyncio.sleep(0.1)
            await asyncio.sleep(interval)

    @property
    def committed_ids(self) -> list[int]:
        return [row_id for ids in self.committed for row_id in ids]


async def log_message_ids(nats_url: str, stream: str = "ACTIVITY") -> list[str]:
    """Every message's Nats-Msg-Id, in log order (None-less: messages without one are skipped)."""
    client = await nats.connect(nats_url)
    try:
        manager = client.jsm(timeout=5)
        info = await manager.stream_info(stream)
        ids: list[str] = []
        position = 0
        while position < info.state.last_seq:
            try:
                message = await manager.get_msg(stream, seq=position + 1, subject=">", next=True)
            except nats.js.errors.NotFoundError:
                break
            position = int(message.seq or position + 1)
            msg_id = (message.headers or {}).get(MSG_ID_HEADER)
            if msg_id:
                ids.append(msg_id)
        return ids
    finally:
        await client.close()


def outbox_count(dsn: str) -> int:
    with psycopg.connect(dsn) as connection:
        row = connection.execute("SELECT count(*) FROM userstream.outbox").fetchone()
    assert row is not None
    return int(row[0])


async def wait_drained(dsn: str, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while await asyncio.to_thread(outbox_count, dsn):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"outbox not drained within {timeout} s")
        await asyncio.sleep(0.05)


def check_exactly_once_in_order(log_ids: list[str], dsn: str, writer: Writer) -> None:
    """Every committed row once, in commit order (the writer commits one transaction after another); no rollback."""
    prefix = f"outbox-{outbox_id(dsn)}-"
    relayed = [int(msg_id.removeprefix(prefix)) for msg_id in log_ids if msg_id.startswith(prefix)]
    duplicates = [row_id for row_id, count in Counter(relayed).items() if count > 1]
    assert not duplicates, f"recorded more than once: {duplicates[:20]}"
    assert not set(relayed) & set(writer.rolled_back), "a rolled-back row was recorded"
    expected = writer.committed_ids
    missing = sorted(set(expected) - set(relayed))
    assert not missing, f"committed but never recorded: {missing[:20]}"
    if relayed != expected:
        first = next(index for index, (got, want) in enumerate(zip(relayed, expected, strict=True)) if got != want)
        around = slice(max(0, first - 8), first + 8)
        raise AssertionError(
            f"rows recorded out of commit order at {first}: {relayed[around]} != {expected[around]}"
            f" (xids {[writer.xids.get(row_id) for row_id in relayed[around]]}"
            f" vs {[writer.xids.get(row_id) for row_id in expected[around]]})"
            f"; {expected[first]} came at position {relayed.index(expected[first])}"
        )
