"""Open streams of this worker: the limits per user, per worker and for anonymous streams, and the writers.

Anonymous (public) streams have a cap of their own below the worker's: a flood
of them fills at most that many slots, and the rest stay for signed-in users.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from userstream.edge.connection import Connection
from userstream.edge.errors import TooManyStreamsError, UnavailableHTTPError


class StreamRegistry:
    def __init__(
        self, max_per_user: int, max_per_worker: int, retry_after: int, max_anonymous: int | None = None
    ) -> None:
        self._max_per_user = max_per_user
        self._max_per_worker = max_per_worker
        # None: anonymous streams are limited by the worker's cap alone.
        self._max_anonymous = max_per_worker if max_anonymous is None else max_anonymous
        self._retry_after = retry_after
        self._per_user: Counter[str] = Counter()
        self._reserved = 0
        self._anonymous = 0
        self.connections: set[Connection] = set()
        # Streams whose response is still being written, with the socket to drop if they stall.
        self._writers: dict[Connection, asyncio.Transport | None] = {}
        self._writers_done = asyncio.Event()
        self._writers_done.set()

    def reserve(self, user_id: str | None) -> None:
        """Take a slot before the connect's I/O, so concurrent connects respect the limits."""
        if user_id is None:
            if self._anonymous >= self._max_anonymous or self._reserved >= self._max_per_worker:
                raise UnavailableHTTPError(
                    "this edge worker is serving its maximum number of anonymous streams", self._retry_after
                )
            self._anonymous += 1
        else:
            if self._per_user[user_id] >= self._max_per_user:
                raise TooManyStreamsError(f"at most {self._max_per_user} streams per user")
            if self._reserved >= self._max_per_worker:
                raise UnavailableHTTPError(
                    "this edge worker is serving its maximum number of streams", self._retry_after
                )
            self._per_user[user_id] += 1
        self._reserved += 1

    def unreserve(self, user_id: str | None) -> None:
        self._reserved -= 1
        if user_id is None:
            self._anonymous -= 1
        else:
            self._per_user[user_id] -= 1
            if self._per_user[user_id] <= 0:
                del self._per_user[user_id]

    def add(self, connection: Connection) -> None:
        """The reserved slot becomes an open stream."""
        self.connections.add(connection)

    def remove(self, connection: Connection) -> None:
        if connection in self.connections:
            self.connections.discard(connection)
            self.unreserve(connection.user_id)

    @property
    def anonymous(self) -> int:
        return self._anonymous

    def streams_of(self, user_id: str) -> int:
        return self._per_user.get(user_id, 0)

    def writer_started(self, connection: Connection, transport: asyncio.Transport | None) -> None:
        self._writers[connection] = transport
        self._writers_done.clear()

    def writer_finished(self, connection: Connection) -> None:
        self._writers.pop(connection, None)
        if not self._writers:
            self._writers_done.set()

    def abort_if_writing(self, connection: Connection) -> None:
        """Drop the socket of a stream that could not flush its `close` (a stalled reader)."""
        if connection in self._writers:
            transport = self._writers[connection]
            if transport is not None:
                transport.abort()

    def abort_all(self) -> None:
        """Drop the socket of every stream still being written (the end of a drain)."""
        for transport in self._writers.values():
            if transport is not None:
                transport.abort()

    @property
    def writers(self) -> int:
        return len(self._writers)

    async def writers_finished(self) -> None:
        await self._writers_done.wait()
