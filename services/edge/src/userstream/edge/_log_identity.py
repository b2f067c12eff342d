"""Noticing that the log was deleted and created again, so no stream mixes cursors of two logs.

A recreated ``ACTIVITY`` stream numbers its events from 1 again under a new
identity (``userstream.cursor``). Left alone, the edge would label the new
log's events with the old identity (its codec is read when the log is opened)
and its channels, remembering the old log's sequences, would take the new
events for ones already delivered. JetStream announces every created stream on
``$JS.EVENT.ADVISORY.STREAM.CREATED.<name>``, and the log is reopened after every
NATS reconnect; either way, a changed identity is reported once to ``on_change``.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from nats.aio.msg import Msg

from userstream.eventlog.log import EventLog
from userstream.nats_connection import NatsConnection

log = structlog.get_logger("userstream.edge")

CREATED_ADVISORY = "$JS.EVENT.ADVISORY.STREAM.CREATED."


class LogIdentityWatch:
    """Calls ``on_change(old_log_id, new_log_id)`` when the open log turns out to be another one."""

    def __init__(self, nats: NatsConnection, event_log: EventLog, on_change: Callable[[int, int], None]) -> None:
        self._nats = nats
        self._log = event_log
        self._on_change = on_change
        self._log_id: int | None = None

    async def start(self) -> None:
        """Once the log is open: remember its identity and watch for another one."""
        self._log_id = self._log.codec.log_id
        self._log.on_readiness_change(self._on_readiness)
        await self._nats.client.subscribe(CREATED_ADVISORY + self._log.stream, cb=self._on_created)

    async def _on_created(self, _: Msg) -> None:
        log.info("edge.log_created_advisory", stream=self._log.stream)
        await self._log.open()  # reads the new identity
        self._check()

    def _on_readiness(self, ready: bool) -> None:
        if ready:
            self._check()

    def _check(self) -> None:
        current = self._log.codec.log_id
        previous, self._log_id = self._log_id, current
        if previous is not None and previous != current:
            self._on_change(previous, current)
