"""Closing streams when their token expires (or their lifetime ends), with one timer for the whole worker.

A timer per stream costs memory on every idle stream; expiries are kept in
one-second buckets instead, and a single task closes the due ones each second
(a stream may outlive its token by under a second). Anonymous streams have a
second wheel for their maximum lifetime (``max-lifetime``, with a ``retry:``).
"""

from __future__ import annotations

import asyncio
import math
import time

from userstream.edge.connection import Connection

TOKEN_EXPIRED = "token-expired"  # noqa: S105  # a close reason, not a secret


class ExpiryWheel:
    def __init__(self, reason: str = TOKEN_EXPIRED, retry_ms: int | None = None) -> None:
        self._reason = reason
        self._retry_ms = retry_ms
        self._buckets: dict[int, set[Connection]] = {}
        self._bucket_of: dict[Connection, int] = {}

    def add(self, connection: Connection, expires_at: float) -> None:
        second = math.ceil(expires_at)
        self._buckets.setdefault(second, set()).add(connection)
        self._bucket_of[connection] = second
        if expires_at <= time.time():
            self.close_due()

    def discard(self, connection: Connection) -> None:
        second = self._bucket_of.pop(connection, None)
        if second is None:
            return
        bucket = self._buckets.get(second)
        if bucket is not None:
            bucket.discard(connection)
            if not bucket:
                del self._buckets[second]

    def close_due(self) -> None:
        now = time.time()
        for second in [second for second in self._buckets if second <= now]:
            for connection in self._buckets.pop(second):
                self._bucket_of.pop(connection, None)
                connection.close(self._reason, retry_ms=self._retry_ms)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(1.0 - (time.time() % 1.0) + 0.001)
            self.close_due()
