"""Synchronous, wire-ordered delivery of a NATS subscription's messages.

nats-py gives every subscription its own queue and task, so messages of
different subscriptions are processed in an order unrelated to the order they
arrived in; the edge needs arrival order (the log's order) across all its
channels. Each live subscription's queue is therefore replaced by this object,
whose ``put_nowait`` — called by the client's reader for each message, in wire
order — hands the message straight to the channel.

This relies on nats-py internals (``Subscription._pending_queue``, pinned
nats-py 2.16); ``tests/integration/edge/test_wire_order.py`` fails if they change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = structlog.get_logger("userstream.edge")


class _LiveQueue:
    """Quacks like the asyncio.Queue nats-py expects, but delivers synchronously."""

    __slots__ = ("_handler",)

    def __init__(self, handler: Callable[[Msg], None]) -> None:
        self._handler = handler

    def put_nowait(self, message: Msg) -> None:
        try:
            self._handler(message)
        except Exception:
            # An exception here would break the NATS client's reader loop.
            log.exception("edge.live_dispatch_failed", subject=message.subject)

    def empty(self) -> bool:
        return True

    def qsize(self) -> int:
        return 0

    def task_done(self) -> None:
        return None

    async def join(self) -> None:
        return None

    async def get(self) -> Any:
        raise RuntimeError("live subscriptions are consumed synchronously")


async def subscribe_in_wire_order(client: Client, subject: str, handler: Callable[[Msg], None]) -> Subscription:
    """Subscribe to ``subject`` with ``handler`` called synchronously for each message, in arrival order."""
    subscription = await client.subscribe(subject, pending_bytes_limit=0)
    subscription._pending_queue = _LiveQueue(handler)  # type: ignore[assignment]  # see module docstring
    return subscription
