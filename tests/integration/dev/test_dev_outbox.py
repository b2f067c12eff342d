"""``userstream dev --outbox-dsn``: the outbox installed, a relay beside the services, a row on a stream."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import psycopg
import pytest

from tests.integration.dev.running import DevRun, start_dev
from tests.support.sse import SSEStream, request

pytestmark = pytest.mark.integration


async def test_a_row_committed_in_the_outbox_reaches_the_users_stream(
    tmp_path: Path, dev_runs: list[DevRun], database: str
) -> None:
    run = start_dev(tmp_path, "--no-traffic", "--outbox-dsn", database, "--relay-port", "0")
    dev_runs.append(run)
    await asyncio.to_thread(run.wait_ready)
    relay_url = run.line_starting("outbox relay").split()[2].removesuffix("/readyz")
    ready = await request(relay_url, "/readyz", timeout=5)
    assert ready.status == 200
    assert json.loads(getattr(ready, "body", b"{}"))["role"] == "active"

    stream = await request(
        run.edge_url, "/me/stream", headers={"Authorization": f"Bearer {run.token_of('alice')}"}, timeout=10
    )
    assert isinstance(stream, SSEStream)
    try:
        while (await stream.next_event(timeout=10)).event != "offset":
            pass
        # What the README shows with psql: a row inserted in a transaction, then committed.
        with psycopg.connect(database) as connection, connection.transaction():
            connection.execute(
                "SELECT userstream.record(type => 'page.updated', organization_id => 'acme',"
                """ entity_id => 'acme-roadmap', data => '{"title": "From the outbox"}')"""
            )
        event = await stream.next_event(timeout=15)
        while event.event != "change":
            event = await stream.next_event(timeout=15)
    finally:
        stream.writer.close()
    change = event.json()
    assert (change["type"], change["entityId"], change["data"]) == (
        "page.updated",
        "acme-roadmap",
        {"title": "From the outbox"},
    )
    assert len(run.children()) == 5  # nats-server, activity, acl, edge, relay
    assert run.stop() == 0
    assert "Traceback" not in run.stderr
