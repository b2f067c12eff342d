"""The outbox's SQL and the application helper against a real PostgreSQL (CONTRACT §7)."""

from __future__ import annotations

import asyncio
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import asyncpg
import psycopg
import pytest

from tests.support.processes import USERSTREAM, clean_environment
from userstream.events.model import ActivityInput, Tx
from userstream.outbox import SCHEMA_VERSION, install, record, record_async, schema_sql

pytestmark = pytest.mark.integration

COLUMNS = (
    "type, organization_id, entity_id, user_id, role, data, changed_keys, transaction_id, source_id,"
    " changed_field, idempotency_key, public"
)


def test_install_is_idempotent_and_concurrent_installs_serialise(database: str) -> None:
    with ThreadPoolExecutor(4) as pool:
        versions = list(pool.map(install, [database] * 4))
    assert versions == [SCHEMA_VERSION] * 4
    with psycopg.connect(database) as connection:
        connection.execute("SELECT userstream.record(type => 'page.updated', organization_id => 'acme')")
        connection.commit()
        outbox_id = connection.execute("SELECT outbox_id FROM userstream.outbox_schema").fetchone()
    assert install(database) == SCHEMA_VERSION  # again, over a table holding a row
    with psycopg.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM userstream.outbox").fetchone() == (1,)
        assert connection.execute("SELECT outbox_id FROM userstream.outbox_schema").fetchone() == outbox_id


def test_a_newer_schema_is_refused_not_downgraded(outbox_dsn: str) -> None:
    with psycopg.connect(outbox_dsn) as connection:
        connection.execute("UPDATE userstream.outbox_schema SET version = 99")
    with pytest.raises(psycopg.errors.RaiseException, match="schema version 99"):
        install(outbox_dsn)


def test_record_takes_named_arguments_with_defaults(outbox_dsn: str) -> None:
    with psycopg.connect(outbox_dsn) as connection:
        connection.execute(
            "SELECT userstream.record(type => 'page.updated', organization_id => 'acme', entity_id => 'p1',"
            """ data => '{"title": "Hello"}')"""
        )
        row = connection.execute(f"SELECT {COLUMNS} FROM userstream.outbox").fetchone()
    assert row == ("page.updated", "acme", "p1", None, None, {"title": "Hello"}, None, None, None, None, None, False)


def test_cli_prints_and_installs(database: str) -> None:
    printed = subprocess.run([USERSTREAM, "outbox", "sql"], capture_output=True, check=True, text=True).stdout
    assert printed == schema_sql()
    assert "CREATE TABLE IF NOT EXISTS userstream.outbox (" in printed
    env = clean_environment(OUTBOX_DSN=database)
    done = subprocess.run([USERSTREAM, "outbox", "install"], capture_output=True, env=env, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "schema version 1" in done.stdout
    missing = subprocess.run(
        [USERSTREAM, "outbox", "install"], capture_output=True, env=clean_environment(), text=True, check=False
    )
    assert missing.returncode == 2
    assert "USERSTREAM_OUTBOX_DSN" in missing.stderr
    relay = subprocess.run([USERSTREAM, "relay"], capture_output=True, env=clean_environment(), text=True, check=False)
    assert relay.returncode == 2
    assert "USERSTREAM_OUTBOX_DSN" in relay.stderr


FULL = ActivityInput(
    type="membership.created",
    organization_id="acme",
    user_id="alice",
    role="member",
    data_json='{"note": 1.10}',
    changed_keys=("role",),
    tx=Tx("t1", "s1", "role"),
    idempotency_key="k1",
    public=False,
    created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
)
EXPECTED = (
    "membership.created",
    "acme",
    None,
    "alice",
    "member",
    {"note": 1.10},
    ["role"],
    "t1",
    "s1",
    "role",
    "k1",
    False,
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
)


def stored(dsn: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as connection:
        return connection.execute(f"SELECT {COLUMNS}, created_at FROM userstream.outbox ORDER BY id").fetchall()


def test_helper_with_psycopg_commits_and_rolls_back_with_the_transaction(outbox_dsn: str) -> None:
    with psycopg.connect(outbox_dsn) as connection:
        with connection.transaction():
            record(connection, FULL)
        with connection.transaction(force_rollback=True):
            record(connection, FULL)
    assert stored(outbox_dsn) == [EXPECTED]


async def test_helper_with_psycopg_async(outbox_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(outbox_dsn) as connection, connection.transaction():
        row_id = await record_async(connection, FULL)
    assert row_id > 0
    assert await asyncio.to_thread(stored, outbox_dsn) == [EXPECTED]


async def test_helper_with_asyncpg(outbox_dsn: str) -> None:
    params = psycopg.conninfo.conninfo_to_dict(outbox_dsn)
    connection = await asyncpg.connect(
        host=params["host"], port=int(str(params["port"])), user=params["user"], database=params["dbname"]
    )
    try:
        async with connection.transaction():
            await record_async(connection, FULL)
        transaction = connection.transaction()
        await transaction.start()
        await record_async(connection, ActivityInput(type="page.updated", organization_id="acme", entity_id="p"))
        await transaction.rollback()
        # Absent fields are NULL and created_at defaults to the transaction's time.
        async with connection.transaction():
            await record_async(connection, ActivityInput(type="page.updated", organization_id="acme", entity_id="p"))
    finally:
        await connection.close()
    rows = await asyncio.to_thread(stored, outbox_dsn)
    assert rows[0] == EXPECTED
    assert rows[1][:12] == ("page.updated", "acme", "p", None, None, None, None, None, None, None, None, False)
    assert len(rows) == 2
