"""Per-organization locks of the recorder on replicated streams: exclusive per organization, never deadlocking."""

from __future__ import annotations

import asyncio

from userstream.eventlog._org_locks import OrganizationLocks


async def test_holders_of_one_organization_take_turns_and_others_do_not_wait() -> None:
    locks = OrganizationLocks()
    inside: list[str] = []
    entered = asyncio.Event()
    release = asyncio.Event()

    async def hold(name: str, organizations: list[str], *, block: bool = False) -> None:
        async with locks.holding(organizations):
            inside.append(name)
            if block:
                entered.set()
                await release.wait()
            inside.remove(name)

    first = asyncio.create_task(hold("first", ["acme", "globex"], block=True))
    await entered.wait()
    waiting = asyncio.create_task(hold("waiting", ["globex"]))
    await asyncio.wait_for(hold("free", ["initech"]), 5)  # another organization: no wait
    await asyncio.sleep(0)
    assert not waiting.done()
    release.set()
    await asyncio.wait_for(asyncio.gather(first, waiting), 5)
    assert inside == []
    assert len(locks) == 0  # nothing kept for organizations nobody holds


async def test_opposite_orders_never_deadlock() -> None:
    locks = OrganizationLocks()

    async def hold(organizations: list[str]) -> None:
        for _ in range(50):
            async with locks.holding(organizations):
                await asyncio.sleep(0)

    await asyncio.wait_for(asyncio.gather(hold(["a", "b", "a"]), hold(["b", "a"]), hold(["b"])), 10)
    assert len(locks) == 0
