"""``userstream outbox sql`` prints the outbox's SQL; ``userstream outbox install`` runs it."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("sql", help="print the SQL (idempotent; pipe it into psql or a migration)")
    install = actions.add_parser("install", help="create or upgrade the outbox in a database")
    install.add_argument("--dsn", default=None, help="libpq connection string or URI (default $USERSTREAM_OUTBOX_DSN)")


def run(args: argparse.Namespace) -> int:
    import sys

    import psycopg

    from userstream.outbox.schema import install, schema_sql
    from userstream.settings import Env, SettingsError

    if args.action == "sql":
        sys.stdout.write(schema_sql())
        return 0
    dsn = args.dsn or Env().optional_text("OUTBOX_DSN")
    if not dsn:
        raise SettingsError("USERSTREAM_OUTBOX_DSN (or --dsn) is required: the database to install the outbox in")
    try:
        version = install(dsn)
    except psycopg.Error as error:
        sys.stderr.write(f"userstream outbox install: {str(error).strip()}\n")
        return 1
    sys.stdout.write(f"userstream outbox: schema version {version} installed\n")
    return 0
