"""The PostgreSQL outbox (CONTRACT §7): its SQL, the row as the relay reads it, and the application helper.

``schema_sql()`` / ``install()`` create or upgrade the outbox; ``record`` and
``record_async`` insert one activity inside the application's own transaction.
"""

from __future__ import annotations

from userstream.outbox.client import record, record_async
from userstream.outbox.schema import SCHEMA_VERSION, install, schema_sql

__all__ = ["SCHEMA_VERSION", "install", "record", "record_async", "schema_sql"]
