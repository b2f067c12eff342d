"""Periodic upkeep: confirm the head, forget history the log no longer holds, write a snapshot.

The barrier first, so the snapshot's position is the log's head (not just the
last membership event): a replica restarting from it then finds the log still
covering everything after it even when only other events flowed since.
"""

from __future__ import annotations

import asyncio

import nats.errors
import structlog

from userstream.acl.follower import MembershipFollower
from userstream.acl.snapshots import SnapshotStore
from userstream.acl_state import SnapshotError
from userstream.errors import UnavailableError

log = structlog.get_logger("userstream.acl")


class Maintenance:
    def __init__(self, follower: MembershipFollower, store: SnapshotStore, interval: float) -> None:
        self._follower = follower
        self._store = store
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._saving: asyncio.Task[bool] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, timeout: float) -> None:
        """Stop the loop, then write a last snapshot (within ``timeout`` seconds)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._saving is not None and not self._saving.done():
            await asyncio.gather(self._saving, return_exceptions=True)
        try:
            await asyncio.wait_for(self.tick(), timeout)
        except TimeoutError:
            log.warning("acl.final_snapshot_timeout", timeout=timeout)

    async def tick(self) -> None:
        """One round of upkeep; failures are logged and retried at the next round."""
        follower = self._follower
        if not follower.synced:
            return
        try:
            bounds = await follower.confirm()
            # Never beyond what this replica reflects: the history stays complete from `floor` on.
            dropped = follower.projection.prune(min(bounds.first_sequence, follower.position + 1))
            if dropped:
                log.info("acl.history_pruned", entries=dropped, floor=follower.projection.floor)
            # Shielded: cancelling the loop must not leave a snapshot's chunks without their manifest.
            self._saving = asyncio.get_running_loop().create_task(
                self._store.save(follower.projection, follower.position)
            )
            await asyncio.shield(self._saving)
        except (UnavailableError, SnapshotError, nats.errors.Error, TimeoutError) as exc:
            log.warning("acl.maintenance_failed", error=str(exc) or repr(exc))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.tick()
