"""The service owns the ``ACTIVITY`` stream: created from settings, brought back to them on restart."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig

from tests.conftest import RunningActivity, service_env, start_activity
from tests.integration.activity.conftest import STREAM
from userstream.activity.service import ActivityService
from userstream.activity.settings import ActivitySettings
from userstream.cursor import parse_cursor
from userstream.embedded_nats import NatsServerProcess
from userstream.events import ActivityInput

pytestmark = pytest.mark.integration

PAGE = ActivityInput(type="page.updated", entity_id="p1", organization_id="acme")


async def stop(running: RunningActivity) -> None:
    await running.client.close()
    await running.service.stop()


async def config_of(nc: Client) -> StreamConfig:
    return (await nc.jsm().stream_info(STREAM)).config


async def test_defaults_are_the_contract_defaults(activity: RunningActivity, nc: Client) -> None:
    config = await config_of(nc)
    assert config.max_age == 604800
    assert config.max_msgs == -1
    assert config.duplicate_window == 120
    assert config.num_replicas == 1
    assert sorted(config.subjects or []) == ["fence.*", "org.*", "tombstone.*.*", "user.*"]
    assert config.republish is not None
    assert (config.republish.src, config.republish.dest) == (">", "live.>")


async def test_settings_are_applied_at_creation(nats_server: NatsServerProcess, nc: Client) -> None:
    running = await start_activity(
        nats_server.url, RETENTION_AGE="3600", RETENTION_MAX_MSGS="1000", DUPLICATE_WINDOW="30"
    )
    try:
        config = await config_of(nc)
        assert (config.max_age, config.max_msgs, config.duplicate_window) == (3600, 1000, 30)
    finally:
        await stop(running)


async def test_changed_settings_are_applied_on_restart_and_the_log_continues(
    nats_server: NatsServerProcess, nc: Client
) -> None:
    running = await start_activity(nats_server.url, RETENTION_AGE="3600")
    try:
        before = await running.client.record(PAGE)
    finally:
        await stop(running)

    running = await start_activity(
        nats_server.url, RETENTION_AGE="7200", RETENTION_MAX_MSGS="50", DUPLICATE_WINDOW="45"
    )
    try:
        config = await config_of(nc)
        assert (config.max_age, config.max_msgs, config.duplicate_window) == (7200, 50, 45)
        after = await running.client.record(PAGE)
        # Updated, not recreated: same log, the sequence goes on.
        assert parse_cursor(after.cursor).log_id == parse_cursor(before.cursor).log_id
        assert parse_cursor(after.cursor).sequence == parse_cursor(before.cursor).sequence + 1
    finally:
        await stop(running)

    # Back to unlimited: the update goes both ways.
    running = await start_activity(nats_server.url, RETENTION_AGE="7200", RETENTION_MAX_MSGS="0")
    try:
        assert (await config_of(nc)).max_msgs == -1
    finally:
        await stop(running)


async def test_restart_with_unchanged_settings_leaves_the_stream_alone(
    nats_server: NatsServerProcess, nc: Client
) -> None:
    running = await start_activity(nats_server.url)
    await stop(running)
    created = (await nc.jsm().stream_info(STREAM)).created
    running = await start_activity(nats_server.url)
    try:
        assert (await nc.jsm().stream_info(STREAM)).created == created
    finally:
        await stop(running)


async def test_max_msgs_drops_the_oldest_events(nats_server: NatsServerProcess, nc: Client) -> None:
    running = await start_activity(nats_server.url, RETENTION_MAX_MSGS="3")
    try:
        results = await running.client.record_many([PAGE] * 5)
        info = await nc.jsm().stream_info(STREAM)
        assert info.state.messages == 3
        assert info.state.first_seq == parse_cursor(results[2].cursor).sequence
        assert await running.client.get_cursor() == results[-1].cursor
    finally:
        await stop(running)


async def test_replicas_beyond_the_cluster_size_keep_the_service_not_ready(
    nats_server: NatsServerProcess, nc: Client
) -> None:
    service = ActivityService(ActivitySettings.load(port=0, env=service_env(nats_server.url, STREAM_REPLICAS="3")))
    await service.start()
    try:
        # A single server cannot hold 3 replicas: the stream is never created and the service never claims ready.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(service.wait_ready()), timeout=1.5)
        assert not service.log.ready
        assert STREAM not in [info.config.name for info in await nc.jsm().streams_info()]
    finally:
        await service.stop()
