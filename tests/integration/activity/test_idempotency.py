"""Idempotency keys (``Nats-Msg-Id``): a retry records nothing new and returns the first cursor."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client

from tests.conftest import RunningActivity, start_activity
from tests.integration.activity.conftest import message_count, stored_messages
from userstream.embedded_nats import NatsServerProcess
from userstream.events import ActivityInput

pytestmark = pytest.mark.integration


def page(key: str, entity_id: str = "p1") -> ActivityInput:
    return ActivityInput(type="page.updated", entity_id=entity_id, organization_id="acme", idempotency_key=key)


async def test_same_key_returns_the_first_cursor_as_a_duplicate(activity: RunningActivity, nc: Client) -> None:
    first = await activity.client.record(page("order-42"))
    again = await activity.client.record(page("order-42"))
    assert not first.duplicate
    assert again.duplicate
    assert again.cursor == first.cursor
    assert await message_count(nc) == 1


async def test_same_key_with_other_content_is_still_the_first_event(activity: RunningActivity, nc: Client) -> None:
    first = await activity.client.record(page("k", entity_id="p1"))
    again = await activity.client.record(page("k", entity_id="p2"))
    assert (again.cursor, again.duplicate) == (first.cursor, True)
    (stored,) = await stored_messages(nc)
    assert b'"entityId":"p1"' in stored.data


async def test_different_keys_record_different_events(activity: RunningActivity, nc: Client) -> None:
    first = await activity.client.record(page("a"))
    second = await activity.client.record(page("b"))
    assert not second.duplicate
    assert int(second.cursor) == int(first.cursor) + 1
    assert await message_count(nc) == 2


async def test_no_key_always_records(activity: RunningActivity, nc: Client) -> None:
    unkeyed = ActivityInput(type="page.updated", entity_id="p1", organization_id="acme")
    results = [await activity.client.record(unkeyed) for _ in range(3)]
    assert len({result.cursor for result in results}) == 3
    assert await message_count(nc) == 3


async def test_keys_are_deduplicated_inside_one_batch_and_across_batches(activity: RunningActivity, nc: Client) -> None:
    first = await activity.client.record_many([page("x"), page("y"), page("x")])
    assert [result.duplicate for result in first] == [False, False, True]
    assert first[2].cursor == first[0].cursor
    second = await activity.client.record_many([page("y"), page("z")])
    assert [(result.cursor, result.duplicate) for result in second[:1]] == [(first[1].cursor, True)]
    assert not second[1].duplicate
    assert await message_count(nc) == 3


async def test_a_retried_batch_records_nothing_twice(activity: RunningActivity, nc: Client) -> None:
    batch = [page(f"item-{i}", entity_id=f"p{i}") for i in range(10)]
    first = await activity.client.record_many(batch)
    retry = await activity.client.record_many(batch)
    assert [result.cursor for result in retry] == [result.cursor for result in first]
    assert all(result.duplicate for result in retry)
    assert await message_count(nc) == 10


@pytest.mark.parametrize("key", ["clé-ü-😀", "k" * 128, "a b/c:d", "Nats-Msg-Id"])
async def test_any_printable_key_up_to_128_characters_works(activity: RunningActivity, key: str) -> None:
    first = await activity.client.record(page(key))
    again = await activity.client.record(page(key))
    assert (again.cursor, again.duplicate) == (first.cursor, True)


async def test_keys_differing_only_in_case_are_different(activity: RunningActivity) -> None:
    first = await activity.client.record(page("Key"))
    second = await activity.client.record(page("key"))
    assert not second.duplicate
    assert second.cursor != first.cursor


async def test_the_key_is_forgotten_after_the_duplicate_window(nats_server: NatsServerProcess, nc: Client) -> None:
    running = await start_activity(nats_server.url, DUPLICATE_WINDOW="1")
    try:
        first = await running.client.record(page("short-lived"))
        started = asyncio.get_running_loop().time()
        # Retrying is itself harmless (a duplicate records nothing), so poll until the window has passed.
        async with asyncio.timeout(10):
            while (result := await running.client.record(page("short-lived"))).duplicate:
                assert result.cursor == first.cursor
                await asyncio.sleep(0.1)
        assert asyncio.get_running_loop().time() - started >= 0.5
        assert int(result.cursor) > int(first.cursor)
        assert await message_count(nc) == 2
    finally:
        await running.client.close()
        await running.service.stop()
