"""Sharing one in-flight request among concurrent callers (reconnect storms, barriers)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    """Calls ``fetch`` for many concurrent ``get()`` callers at once.

    A caller never receives a result whose fetch started before it called: who
    arrives during a fetch waits for the next one, which serves everyone who
    arrived meanwhile. Under load this costs one fetch per round trip, whatever
    the number of callers.
    """

    def __init__(self, fetch: Callable[[], Awaitable[T]]) -> None:
        self._fetch = fetch
        self._next: asyncio.Future[T] | None = None
        self._running: asyncio.Task[None] | None = None

    async def get(self) -> T:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            self._next.add_done_callback(_retrieve)
        waiting = self._next
        if self._running is None or self._running.done():
            self._running = asyncio.get_running_loop().create_task(self._rounds())
        return await asyncio.shield(waiting)

    async def _rounds(self) -> None:
        while self._next is not None:
            round_future, self._next = self._next, None
            try:
                result = await self._fetch()
            except Exception as exc:  # handed to every caller of this round
                round_future.set_exception(exc)
            else:
                round_future.set_result(result)


def _retrieve(future: asyncio.Future[T]) -> None:
    # Callers may all have gone (cancelled); mark the exception seen so asyncio does not warn about it.
    if not future.cancelled():
        future.exception()
