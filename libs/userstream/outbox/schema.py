"""The outbox's SQL (``schema.sql`` beside this file) and running it against a database."""

from __future__ import annotations

from importlib.resources import files

import psycopg

# The version schema.sql installs; a later release migrates from any older one.
SCHEMA_VERSION = 1


def schema_sql() -> str:
    """The idempotent SQL that creates the outbox or brings it to ``SCHEMA_VERSION``."""
    return files("userstream.outbox").joinpath("schema.sql").read_text(encoding="utf-8")


def install(dsn: str) -> int:
    """Run the SQL against ``dsn`` (a libpq connection string or URI); returns the installed version."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        # The script holds its own BEGIN/COMMIT and takes an advisory lock, so concurrent installs serialise.
        connection.execute(schema_sql().encode())
        row = connection.execute("SELECT version FROM userstream.outbox_schema").fetchone()
    assert row is not None
    version: int = row[0]
    return version


async def install_async(dsn: str) -> int:
    """``install`` on an asyncio loop."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        await connection.execute(schema_sql().encode())
        cursor = await connection.execute("SELECT version FROM userstream.outbox_schema")
        row = await cursor.fetchone()
    assert row is not None
    version: int = row[0]
    return version
