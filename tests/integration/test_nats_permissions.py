"""The NATS users and permissions of deploy/ (nats/auth.conf), with the real services on them (issue 19).

A nats-server reads the very file the deployments include; activity, acl and
an edge connect as their own users. What they need works (record, grant, a
stream live and resumed, the edge's reads of the log); what the edge must not
do is refused: publishing to ``live.>`` (a forged live event) or into the log.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import nats.aio.client
import nats.errors
import psycopg
import pytest

from tests.conftest import start_activity
from tests.integration.relay.conftest import start_relay
from tests.support.edge import edge_settings, start_edge, wait_until
from tests.support.outbox import log_message_ids, wait_drained
from tests.support.sse import open_stream
from tests.support.stack import SECRET, start_acl_service
from userstream.embedded_nats import NatsServerProcess
from userstream.eventlog.reader import LogReader
from userstream.events import ActivityInput
from userstream.nats_connection import NatsConnection
from userstream.outbox import install, record
from userstream.rpc.acl import AclClient
from userstream.settings import NatsSettings
from userstream.tokens import issue_token

pytestmark = pytest.mark.integration

AUTH_CONF = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base" / "nats" / "auth.conf"
PASSWORDS = {
    "activity": "activity-password-0123",
    "acl": "acl-password-0123",
    "edge": "edge-password-0123",
    "relay": "relay-password-0123",
}


@pytest.fixture
def secured_nats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NatsServerProcess]:
    for user, password in PASSWORDS.items():
        monkeypatch.setenv(f"NATS_{user.upper()}_PASSWORD", password)  # the server reads them from its environment
    shutil.copy(AUTH_CONF, tmp_path / "auth.conf")
    config = tmp_path / "nats.conf"
    config.write_text("include ./auth.conf\n")
    server = NatsServerProcess(store_dir=tmp_path / "nats", log_file=tmp_path / "nats.log", config_file=config)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def _url(server: NatsServerProcess, user: str) -> str:
    return f"nats://{user}:{PASSWORDS[user]}@127.0.0.1:{server.port}"


@pytest.fixture
async def edge_nats(secured_nats: NatsServerProcess) -> AsyncIterator[NatsConnection]:
    connection = NatsConnection(NatsSettings(servers=(_url(secured_nats, "edge"),)), name="test-edge")
    await connection.connect()
    try:
        yield connection
    finally:
        await connection.close()


async def test_the_services_work_as_their_users(secured_nats: NatsServerProcess) -> None:
    activity = await start_activity(_url(secured_nats, "activity"))
    acl_service = await start_acl_service(_url(secured_nats, "acl"))
    acl_addr = f"127.0.0.1:{acl_service.port}"
    edge = await start_edge(edge_settings(_url(secured_nats, "edge"), acl_addr, SECRET))
    acl = AclClient(acl_addr)
    auth = {"Authorization": f"Bearer {issue_token('alice', SECRET, 3600)}"}
    try:
        await acl.grant_membership("alice", "acme", "member")
        async with await open_stream(edge.base_url, headers=auth) as stream:
            assert (await stream.next_event()).event == "offset"
            page = ActivityInput(type="page.updated", organization_id="acme", entity_id="p1")
            live = (await activity.client.record(page)).cursor
            assert await stream.change_ids_until(live) == [live]
        missed = [(await activity.client.record(page)).cursor for _ in range(30)]
        async with await open_stream(edge.base_url, headers={**auth, "Last-Event-ID": live}) as resumed:
            assert await resumed.change_ids_until(missed[-1]) == missed
    finally:
        await acl.close()
        await edge.stop()
        await acl_service.stop()
        await activity.client.close()
        await activity.service.stop()


async def test_the_edge_reads_the_log_with_a_consumer(
    secured_nats: NatsServerProcess, edge_nats: NatsConnection
) -> None:
    activity = await start_activity(_url(secured_nats, "activity"))
    try:
        page = ActivityInput(type="page.updated", organization_id="acme", entity_id="p1")
        cursors = [(await activity.client.record(page)).cursor for _ in range(20)]
    finally:
        await activity.client.close()
        await activity.service.stop()
    reader = LogReader(edge_nats, "ACTIVITY")
    last = await reader.last_sequence("org.acme")
    # Longer than the single gets: an ordered consumer (gap repairs, probes), then a page (catch-ups).
    assert len(await reader.read("org.acme", 0, last)) == len(cursors)
    assert len(await reader.read_page("org.acme", 0, last, 5, 1 << 20)) == 5


async def test_the_edge_may_not_publish_live_events_or_into_the_log(
    secured_nats: NatsServerProcess, edge_nats: NatsConnection
) -> None:
    activity = await start_activity(_url(secured_nats, "activity"))
    errors: list[Exception] = []

    async def on_error(error: Exception) -> None:
        errors.append(error)

    client = await nats.connect(_url(secured_nats, "edge"), error_cb=on_error)
    try:
        received: list[str] = []

        async def collect(message: nats.aio.msg.Msg) -> None:
            received.append(message.subject)

        await client.subscribe("live.>", cb=collect)  # allowed: the live path
        await client.publish("live.org.acme", b"{}")  # a forged live event
        await client.publish("org.acme", b"{}")  # straight into the log
        await client.flush()
        await wait_until(lambda: len(errors) >= 2, 10)
        assert all("permissions violation" in str(error).lower() for error in errors), errors
        head_before = await activity.client.get_cursor()
        # The log did not change: the next recorded event follows the last one recorded by activity.
        page = ActivityInput(type="page.updated", organization_id="acme", entity_id="p1")
        recorded = (await activity.client.record(page)).cursor
        await wait_until(lambda: "live.org.acme" in received, 10)  # the real one, republished by the stream
        assert received == ["live.org.acme"]
        assert recorded != head_before
    finally:
        await client.close()
        await activity.client.close()
        await activity.service.stop()


async def test_no_user_no_connection(secured_nats: NatsServerProcess) -> None:
    client = nats.aio.client.Client()
    try:
        with pytest.raises((nats.errors.Error, OSError)):
            await client.connect(secured_nats.url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)
    finally:
        await client.close()  # nats-py leaves the refused socket open otherwise


async def test_the_relay_records_as_its_user(secured_nats: NatsServerProcess, database: str) -> None:
    """The relay's user may record (an event, and a deletion with its tombstones) and nothing is rejected."""
    install(database)
    activity = await start_activity(_url(secured_nats, "activity"))  # provisions the log
    relay = await start_relay(_url(secured_nats, "relay"), database)
    try:
        with psycopg.connect(database) as connection, connection.transaction():
            record(connection, ActivityInput(type="page.updated", organization_id="acme", entity_id="p1"))
            record(connection, ActivityInput(type="organization.deleted", organization_id="gone"))
        await wait_drained(database)
        with psycopg.connect(database) as connection:
            rejected = connection.execute("select error from userstream.outbox_rejected").fetchall()
        assert rejected == []
        recorded = await log_message_ids(_url(secured_nats, "activity"))
        assert len(recorded) == 2
        assert all(msg_id.startswith("outbox-") for msg_id in recorded)
    finally:
        await relay.service.stop()
        await activity.client.close()
        await activity.service.stop()
