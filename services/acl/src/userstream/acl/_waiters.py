"""Waiting until a monotonically growing sequence reaches a target."""

from __future__ import annotations

import asyncio
import heapq
import itertools


class SequenceWaiters:
    """Futures resolved when ``advance`` reaches their target; one heap, cheap to advance."""

    def __init__(self) -> None:
        self.reached = 0
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def advance(self, sequence: int) -> None:
        self.reached = sequence
        heap = self._heap
        while heap and heap[0][0] <= sequence:
            _, _, future = heapq.heappop(heap)
            if not future.done():
                future.set_result(None)

    async def wait(self, target: int, timeout: float) -> None:
        """Return once ``reached >= target``; raises TimeoutError after ``timeout`` seconds."""
        if self.reached >= target:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (target, next(self._order), future))
        try:
            await asyncio.wait_for(future, timeout)
        finally:
            future.cancel()  # a no-op once resolved; otherwise the heap drops it on the next advance

    def reset(self, sequence: int) -> None:
        """Start over at ``sequence`` (the projection was replaced); waiters keep waiting for their target."""
        self.reached = sequence
        self.advance(sequence)
