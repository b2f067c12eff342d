"""Asking acl for the subjects of many connects at once.

Each connect needs its user's subject from acl; a gRPC call costs the edge
~150 µs of CPU whatever it carries. Questions asked in the same event-loop
iteration — a reconnect storm after a deploy asks thousands in a second — go
out together as one ``GetSubjects`` call. A lone connect is a batch of one.
"""

from __future__ import annotations

import asyncio

from userstream.acl_state.subject import CursorRefusedError, Subject
from userstream.rpc.acl import AclClient

_MAX_BATCH = 256


class SubjectBatcher:
    def __init__(self, client: AclClient, max_batch: int = _MAX_BATCH) -> None:
        self._client = client
        self._max_batch = max_batch
        self._waiting: list[tuple[str, str, asyncio.Future[Subject]]] = []
        self._scheduled = False
        self._calls: set[asyncio.Task[None]] = set()

    async def get_subject(self, user_id: str, at_cursor: str) -> Subject:
        """As ``AclClient.get_subject``: raises CursorRefusedError, or the error of the whole call."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Subject] = loop.create_future()
        self._waiting.append((user_id, at_cursor, answer))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._send)
        return await answer

    def _send(self) -> None:
        self._scheduled = False
        waiting, self._waiting = self._waiting, []
        for start in range(0, len(waiting), self._max_batch):
            task = asyncio.get_running_loop().create_task(self._call(waiting[start : start + self._max_batch]))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _call(self, batch: list[tuple[str, str, asyncio.Future[Subject]]]) -> None:
        try:
            answers = await self._client.get_subjects([(user_id, at_cursor) for user_id, at_cursor, _ in batch])
        except Exception as error:  # the whole call failed: every connect in it hears why
            for _, _, answer in batch:
                if not answer.done():
                    answer.set_exception(error)
            return
        for (_, _, answer), result in zip(batch, answers, strict=True):
            if answer.done():
                continue  # the connect gave up (client gone)
            if isinstance(result, CursorRefusedError):
                answer.set_exception(result)
            else:
                answer.set_result(result)
