"""Per-organization locks, for streams where JetStream serialises conditional writes per organization.

On a clustered stream the leader refuses a conditional write (error 10164)
while another conditional write checked against the same subject is still
being replicated, without comparing anything. Every event is conditional on its
organization's tombstone (``deletions``), so two writes of one organization in
flight at once would refuse each other. Within one process the recorder avoids
that by holding the organization's lock from publish to acknowledgement; only
writers in other processes can still meet it (and are retried).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager


class OrganizationLocks:
    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def holding(self, organization_ids: Iterable[str]) -> AsyncIterator[None]:
        """Hold the locks of ``organization_ids`` (taken in sorted order, so concurrent holders never deadlock)."""
        async with AsyncExitStack() as stack:
            for organization_id in sorted(set(organization_ids)):
                await stack.enter_async_context(self._held(organization_id))
            yield

    @asynccontextmanager
    async def _held(self, organization_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(organization_id) or (asyncio.Lock(), 0)
        self._locks[organization_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[organization_id]
            if users == 1:
                del self._locks[organization_id]
            else:
                self._locks[organization_id] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
