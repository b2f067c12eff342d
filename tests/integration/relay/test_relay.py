"""The relay against real PostgreSQL, NATS and the activity service: CONTRACT §7's guarantees, fault-free."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import nats
import psycopg
import pytest

from tests.integration.relay.conftest import RunningRelay
from tests.support.outbox import (
    Writer,
    check_exactly_once_in_order,
    log_message_ids,
    outbox_id,
    page_change,
    wait_drained,
)
from tests.support.sse import request
from userstream.embedded_nats import NatsServerProcess
from userstream.errors import FailedPreconditionError
from userstream.eventlog.recorder import Recorded, Recorder
from userstream.events.model import Activity, ActivityInput
from userstream.outbox import record
from userstream.relay.store import OutboxSession

pytestmark = pytest.mark.integration


async def test_committed_rows_once_in_commit_order_rolled_back_never(
    relay: RunningRelay, nats_server: NatsServerProcess, outbox_dsn: str
) -> None:
    writer = Writer(outbox_dsn)
    for index in range(30):
        await asyncio.to_thread(writer.commit_one, rollback=index % 4 == 3)
    await wait_drained(outbox_dsn)
    check_exactly_once_in_order(await log_message_ids(nats_server.url), outbox_dsn, writer)


async def test_invalid_rows_are_moved_out_without_holding_anything_back(
    relay: RunningRelay, nats_server: NatsServerProcess, outbox_dsn: str
) -> None:
    with psycopg.connect(outbox_dsn) as connection, connection.transaction():
        first = record(connection, page_change(1))
        unknown = record(connection, ActivityInput(type="widget.updated", organization_id="acme", entity_id="w"))
        bad_org = record(connection, ActivityInput(type="page.updated", organization_id="no spaces", entity_id="p"))
        not_object = connection.execute(
            "SELECT userstream.record(type => 'page.updated', organization_id => 'acme', entity_id => 'p',"
            " data => '[1, 2]')"
        ).fetchone()
        not_public = record(
            connection, ActivityInput(type="attachment.updated", organization_id="acme", entity_id="a", public=True)
        )
        last = record(connection, page_change(2))
    assert not_object is not None
    await wait_drained(outbox_dsn)
    prefix = f"outbox-{outbox_id(outbox_dsn)}-"
    assert await log_message_ids(nats_server.url) == [f"{prefix}{first}", f"{prefix}{last}"]
    with psycopg.connect(outbox_dsn) as connection:
        rejected = dict(connection.execute("SELECT id, error FROM userstream.outbox_rejected ORDER BY id").fetchall())
        columns = connection.execute(
            "SELECT type, organization_id, entity_id, rejected_at IS NOT NULL FROM userstream.outbox_rejected"
            " WHERE id = %s",
            (bad_org,),
        ).fetchone()
    assert set(rejected) == {unknown, bad_org, not_object[0], not_public}
    assert rejected[unknown].startswith("type:")
    assert rejected[bad_org].startswith("organization_id:")
    assert rejected[not_object[0]].startswith("data_json:")
    assert rejected[not_public].startswith("public:")
    assert columns == ("page.updated", "no spaces", "p", True)


async def test_overlapping_transactions_stay_contiguous_in_insertion_order(
    relay: RunningRelay, nats_server: NatsServerProcess, outbox_dsn: str
) -> None:
    # Two transactions insert alternately; each one's rows must come out together, in insertion order.
    with psycopg.connect(outbox_dsn) as one, psycopg.connect(outbox_dsn) as two:
        ids: dict[str, list[int]] = {"one": [], "two": []}
        for n in range(5):
            ids["one"].append(record(one, page_change(n)))
            ids["two"].append(record(two, page_change(100 + n)))
        two.commit()
        one.commit()
    await wait_drained(outbox_dsn)
    prefix = f"outbox-{outbox_id(outbox_dsn)}-"
    relayed = [int(msg_id.removeprefix(prefix)) for msg_id in await log_message_ids(nats_server.url)]
    assert relayed in (ids["one"] + ids["two"], ids["two"] + ids["one"])


async def test_an_open_transaction_holds_nothing_back(
    relay: RunningRelay, nats_server: NatsServerProcess, outbox_dsn: str
) -> None:
    # A transaction still open (and older) does not delay one that commits meanwhile; it is recorded
    # when it commits, after what was recorded before (none of those committed before it began... or
    # after it: CONTRACT §7.2 orders only a transaction that committed before the other began).
    with psycopg.connect(outbox_dsn) as long_running:
        long_id = record(long_running, page_change(1))
        writer = Writer(outbox_dsn, rows_per_transaction=2)
        await asyncio.to_thread(writer.commit_one)
        await wait_drained(outbox_dsn, timeout=30)  # recorded while the long transaction is still open
        long_running.commit()
    await wait_drained(outbox_dsn)
    prefix = f"outbox-{outbox_id(outbox_dsn)}-"
    relayed = [int(msg_id.removeprefix(prefix)) for msg_id in await log_message_ids(nats_server.url)]
    assert relayed == [*writer.committed_ids, long_id]


async def test_created_at_and_idempotency_key_are_kept(
    relay: RunningRelay, nats_server: NatsServerProcess, outbox_dsn: str
) -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    with psycopg.connect(outbox_dsn) as connection, connection.transaction():
        for _ in range(2):  # the same key twice: recorded once
            record(
                connection,
                ActivityInput(
                    type="page.created",
                    organization_id="acme",
                    entity_id="p1",
                    idempotency_key="k-1",
                    created_at=moment,
                ),
            )
    await wait_drained(outbox_dsn)
    assert await log_message_ids(nats_server.url) == ["k-1"]
    client = await nats.connect(nats_server.url)
    try:
        message = await client.jsm().get_msg("ACTIVITY", seq=1)
    finally:
        await client.close()
    assert json.loads(message.data or b"{}")["createdAt"] == "2026-01-02T03:04:05.678Z"


async def test_probes_say_active_and_count_rows(relay: RunningRelay, outbox_dsn: str) -> None:
    writer = Writer(outbox_dsn)
    await asyncio.to_thread(writer.commit_one)
    await wait_drained(outbox_dsn)
    ready = await request(relay.base_url, "/readyz", timeout=5)
    assert ready.status == 200
    assert json.loads(ready.body)["role"] == "active"
    assert (await request(relay.base_url, "/healthz", timeout=5)).status == 200
    metrics = (await request(relay.base_url, "/metrics", timeout=5)).body.decode()
    assert "userstream_relay_rows_recorded_total 3.0" in metrics
    assert "userstream_relay_active 1.0" in metrics


async def test_a_refusal_of_the_write_path_rejects_that_row_and_records_the_others(
    relay: RunningRelay, nats_server: NatsServerProcess, outbox_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shared Recorder refuses some writes with a domain error (a deleted organization: CONTRACT §2);
    # stand in for that rule here, on the real recorder, for one organization.
    original = Recorder.record

    async def refusing(self: Recorder, activities: Sequence[Activity], **options: Any) -> list[Recorded]:
        if any(activity.organization_id == "gone" for activity in activities):
            raise FailedPreconditionError("organization gone was deleted")
        return await original(self, activities, **options)

    monkeypatch.setattr(Recorder, "record", refusing)
    with psycopg.connect(outbox_dsn) as connection, connection.transaction():
        first = record(connection, page_change(1))
        gone = record(connection, page_change(2, org="gone"))
        last = record(connection, page_change(3))
    await wait_drained(outbox_dsn)
    prefix = f"outbox-{outbox_id(outbox_dsn)}-"
    assert await log_message_ids(nats_server.url) == [f"{prefix}{first}", f"{prefix}{last}"]
    with psycopg.connect(outbox_dsn) as connection:
        rejected = connection.execute("SELECT id, error FROM userstream.outbox_rejected").fetchall()
    assert rejected == [(gone, "organization gone was deleted")]


async def test_transactions_sort_by_their_number_not_its_digits(outbox_dsn: str) -> None:
    # xid8 order, not text order: transaction 999 before 1000 (a bug once, caught by the kill test).
    with psycopg.connect(outbox_dsn) as connection:
        for xid in ("1000", "999", "10000"):
            connection.execute(
                "INSERT INTO userstream.outbox (xid, type, organization_id, entity_id)"
                " VALUES (%s::xid8, 'page.updated', 'acme', %s)",
                (xid, f"p{xid}"),
            )
    session = await OutboxSession.connect(outbox_dsn, 5.0)
    try:
        assert [row.xid for row in await session.fetch(10)] == [999, 1000, 10000]
        assert [row.xid for row in await session.fetch(10, continuing_xid=1000)] == [1000]
    finally:
        await session.close()
