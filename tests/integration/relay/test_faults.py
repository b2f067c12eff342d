"""The relay under faults: SIGKILL at random moments (also longer than the duplicate window),
two relays killed in turn, PostgreSQL restarted, NATS restarted. Every committed row exactly once,
in commit order; rolled-back rows never."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from tests.conftest import RunningActivity, start_activity
from tests.integration.relay.conftest import MakeRelay, start_relay
from tests.support.outbox import Writer, check_exactly_once_in_order, log_message_ids, wait_drained
from tests.support.postgres import PostgresServer
from tests.support.processes import ServiceProcess
from tests.support.sse import HTTPResponse, request
from userstream.embedded_nats import NatsServerProcess
from userstream.events.validation import Limits, validate_activity
from userstream.outbox.rows import row_message_id
from userstream.policy import load_policy
from userstream.relay.store import Inflight, OutboxSession

pytestmark = pytest.mark.integration

# Short, so that a relay kept down for a few seconds is down for longer than the window.
DUPLICATE_WINDOW = 2.0


@pytest.fixture
async def short_window_activity(nats_server: NatsServerProcess) -> AsyncIterator[RunningActivity]:
    running = await start_activity(nats_server.url, DUPLICATE_WINDOW=str(DUPLICATE_WINDOW))
    try:
        yield running
    finally:
        await running.client.close()
        await running.service.stop()


async def role_of(process: ServiceProcess) -> str | None:
    try:
        response = await request(process.base_url, "/readyz", timeout=1.0)
    except (OSError, TimeoutError, ValueError, IndexError):
        return None
    if not isinstance(response, HTTPResponse):
        return None
    role: str = json.loads(response.body).get("role", "")
    return role


async def wait_role(process: ServiceProcess, role: str, timeout: float) -> float:
    """Seconds until ``process`` reports ``role``."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while await role_of(process) != role:
        if loop.time() - started > timeout:
            raise TimeoutError(f"{process.command} not {role} within {timeout} s; see {process.log_file}")
        await asyncio.sleep(0.05)
    return loop.time() - started


async def _until_one_active(relays: list[ServiceProcess]) -> None:
    while "active" not in [await role_of(process) for process in relays]:  # noqa: ASYNC110  # polling HTTP
        await asyncio.sleep(0.05)


@pytest.mark.timeout(300)
async def test_sigkill_at_random_moments_also_beyond_the_duplicate_window(
    make_relay: MakeRelay, nats_server: NatsServerProcess, short_window_activity: RunningActivity, outbox_dsn: str
) -> None:
    chooser = random.Random()
    relay = make_relay(nats_server.url, outbox_dsn, RELAY_POLL_INTERVAL="0.01", RELAY_BATCH_SIZE="7")
    writer = Writer(outbox_dsn, rows_per_transaction=4)
    stop = asyncio.Event()
    writing = asyncio.create_task(writer.run(stop, interval=0.002))
    try:
        relay.start()
        await relay.wait_ready()
        for round_ in range(8):
            await asyncio.sleep(chooser.uniform(0.05, 0.6))  # a random moment of the steady stream
            relay.kill()
            # Every other time the relay stays down for longer than the duplicate window.
            await asyncio.sleep(DUPLICATE_WINDOW + 1 if round_ % 2 else chooser.uniform(0, 0.2))
            relay.start()
            await relay.wait_ready()
    finally:
        stop.set()
        await writing
    await wait_drained(outbox_dsn)
    relay.terminate()
    assert len(writer.committed) > 20
    check_exactly_once_in_order(await log_message_ids(nats_server.url), outbox_dsn, writer)


async def test_a_batch_published_before_a_crash_is_not_recorded_again_after_the_window(
    nats_server: NatsServerProcess, short_window_activity: RunningActivity, outbox_dsn: str
) -> None:
    """The crash between JetStream's acknowledgement and the delete, made to happen, then a long outage."""
    writer = Writer(outbox_dsn, rows_per_transaction=5)
    await asyncio.to_thread(writer.commit_one)
    session = await OutboxSession.connect(outbox_dsn, 5.0)
    try:
        state = await session.state()
        rows = await session.fetch(100)
        activities = []
        for row in rows:
            activity = validate_activity(row.activity_input(), load_policy(None), Limits())
            key = row_message_id(state.outbox_id, row.id)
            activities.append(dataclasses.replace(activity, idempotency_key=key))
        head = (await short_window_activity.service.log.bounds()).last_sequence
        inflight = Inflight(ids=tuple(row.id for row in rows), after_sequence=head, attempted_at=datetime.now(UTC))
        await session.begin_batch(inflight, [])
        # The first three reach the log; then the relay "dies" before deleting anything.
        await short_window_activity.service.log.recorder().record(activities[:3])
    finally:
        await session.close()
    await asyncio.sleep(DUPLICATE_WINDOW + 1)  # JetStream has forgotten those message ids by now
    relay = await start_relay(nats_server.url, outbox_dsn)
    try:
        await wait_drained(outbox_dsn)
    finally:
        await relay.service.stop()
    check_exactly_once_in_order(await log_message_ids(nats_server.url), outbox_dsn, writer)


@pytest.mark.timeout(300)
async def test_two_relays_one_active_each_killed_in_turn_takes_over_within_15_s(
    make_relay: MakeRelay, nats_server: NatsServerProcess, short_window_activity: RunningActivity, outbox_dsn: str
) -> None:
    relays = [
        make_relay(nats_server.url, outbox_dsn, name=name, RELAY_POLL_INTERVAL="0.01")
        for name in ("relay-a", "relay-b")
    ]
    writer = Writer(outbox_dsn)
    stop = asyncio.Event()
    writing = asyncio.create_task(writer.run(stop, interval=0.005))
    try:
        for process in relays:
            process.start()
        await asyncio.gather(*(process.wait_ready() for process in relays))
        # Both answer ready as standbys at first; one of them takes the lock a moment later.
        await asyncio.wait_for(_until_one_active(relays), 15.0)
        roles = [await role_of(process) for process in relays]
        assert sorted(roles) == ["active", "standby"], roles  # type: ignore[type-var]
        for _ in range(3):
            active, standby = (relays[0], relays[1]) if await role_of(relays[0]) == "active" else relays[::-1]
            active.kill()
            takeover = await wait_role(standby, "active", timeout=15.0)
            assert takeover <= 15.0
            active.start()
            await active.wait_ready()
            assert await role_of(active) == "standby"
    finally:
        stop.set()
        await writing
    await wait_drained(outbox_dsn)
    for process in relays:
        process.terminate()
    check_exactly_once_in_order(await log_message_ids(nats_server.url), outbox_dsn, writer)


async def test_postgres_restarted(
    make_relay: MakeRelay, nats_server: NatsServerProcess, short_window_activity: RunningActivity
) -> None:
    server = PostgresServer()  # its own: the restart must not disturb other tests' databases
    try:
        await asyncio.to_thread(server.start)
        dsn = server.create_database()
        from userstream.outbox import install

        install(dsn)
        relay = make_relay(nats_server.url, dsn, RELAY_BACKOFF_MAX="0.5")
        relay.start()
        await relay.wait_ready()
        writer = Writer(dsn)
        stop = asyncio.Event()
        writing = asyncio.create_task(writer.run(stop))
        try:
            await asyncio.sleep(0.5)
            await asyncio.to_thread(server.stop)
            ready = await request(relay.base_url, "/readyz", timeout=5)
            deadline = asyncio.get_running_loop().time() + 15
            while ready.status != 503 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
                ready = await request(relay.base_url, "/readyz", timeout=5)
            assert ready.status == 503
            await asyncio.to_thread(server.start)
            await relay.wait_ready()
            await asyncio.sleep(0.5)
        finally:
            stop.set()
            await writing
        await wait_drained(dsn)
        relay.terminate()
        assert "relay.postgres_unavailable" in relay.log_text()
        check_exactly_once_in_order(await log_message_ids(nats_server.url), dsn, writer)
    finally:
        server.destroy()


async def test_nats_restarted(
    make_relay: MakeRelay, nats_server: NatsServerProcess, short_window_activity: RunningActivity, outbox_dsn: str
) -> None:
    relay = make_relay(nats_server.url, outbox_dsn, RELAY_BACKOFF_MAX="0.5")
    relay.start()
    await relay.wait_ready()
    writer = Writer(outbox_dsn)
    stop = asyncio.Event()
    writing = asyncio.create_task(writer.run(stop))
    try:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(nats_server.stop)
        await asyncio.sleep(DUPLICATE_WINDOW + 1)  # rows pile up meanwhile; longer than the window
        await asyncio.to_thread(nats_server.start)
        await relay.wait_ready()
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await writing
    await wait_drained(outbox_dsn)
    assert relay.terminate() == 0  # SIGTERM stops it cleanly
    assert "relay.nats_unavailable" in relay.log_text()
    check_exactly_once_in_order(await log_message_ids(nats_server.url), outbox_dsn, writer)
