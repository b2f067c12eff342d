"""Waiting for a growing sequence: resolved in order, timeouts leave nothing behind."""

from __future__ import annotations

import asyncio

import pytest

from userstream.acl._waiters import SequenceWaiters


async def settle() -> None:
    """Let every ready task run (a wake-up passes through wait_for's own task)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_waiters_wake_once_their_target_is_reached() -> None:
    waiters = SequenceWaiters()
    woken: list[int] = []

    async def wait(target: int) -> None:
        await waiters.wait(target, timeout=5.0)
        woken.append(target)

    tasks = [asyncio.create_task(wait(target)) for target in (3, 1, 2, 5)]
    await settle()
    waiters.advance(2)
    await settle()
    assert sorted(woken) == [1, 2]
    waiters.advance(5)
    await asyncio.gather(*tasks)
    assert sorted(woken) == [1, 2, 3, 5]


async def test_a_reached_target_returns_at_once() -> None:
    waiters = SequenceWaiters()
    waiters.advance(7)
    await asyncio.wait_for(waiters.wait(7, timeout=0.01), timeout=1.0)


async def test_a_target_not_reached_in_time_times_out() -> None:
    waiters = SequenceWaiters()
    with pytest.raises(TimeoutError):
        await waiters.wait(1, timeout=0.01)
    waiters.advance(1)  # the abandoned waiter is dropped without complaint


async def test_reset_keeps_waiting_for_targets_beyond_it() -> None:
    waiters = SequenceWaiters()
    waiters.advance(10)
    waiters.reset(0)
    assert waiters.reached == 0
    task = asyncio.create_task(waiters.wait(3, timeout=5.0))
    await settle()
    assert not task.done()
    waiters.advance(3)
    await task
