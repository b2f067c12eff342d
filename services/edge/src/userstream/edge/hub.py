"""The hub: this worker's channels, reference-counted by the connections that joined them.

It routes joins and leaves to channels (creating and closing them), runs the
per-iteration flush of every stream with new bytes, and reacts to NATS
reconnects and stream leader changes by probing every channel. The user feed
(``user_feed.py``) serves every connection's own ``user.<id>`` subject.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from nats.aio.msg import Msg

from userstream.cursor import CursorCodec
from userstream.edge._live_queue import subscribe_in_wire_order
from userstream.edge._timestamps import TimestampParser
from userstream.edge.channels import Channel
from userstream.edge.connection import Connection
from userstream.edge.fanout_trace import FanoutTracer
from userstream.edge.outbox import Outbox
from userstream.edge.settings import EdgeSettings
from userstream.edge.user_feed import UserFeed
from userstream.eventlog.reader import LogReader
from userstream.eventlog.subjects import TIMESTAMP_HEADER, USER_PREFIX
from userstream.nats_connection import NatsConnection

log = structlog.get_logger("userstream.edge")

LEADER_ELECTED_ADVISORY = "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED."


class HubStats:
    """Plain counters read by the metrics collector (cheaper than metric objects on the hot path)."""

    __slots__ = (
        "auth_failures",
        "catchup_reads",
        "deliveries",
        "events",
        "gap_repairs",
        "leader_changes",
        "must_refetch",
        "resyncs",
        "slow_consumers",
    )

    def __init__(self) -> None:
        self.events = 0
        self.deliveries = 0
        self.gap_repairs = 0
        self.leader_changes = 0
        self.resyncs = 0
        self.catchup_reads = 0
        self.slow_consumers = 0
        # Stream requests refused, by reason: 401s (`missing`, `malformed`, `expired`, `invalid`) and must-refetch.
        self.auth_failures: dict[str, int] = {}
        self.must_refetch: dict[str, int] = {}


class Hub:
    """This worker's channels, reference-counted by the connections that joined them."""

    def __init__(
        self,
        *,
        connection: NatsConnection,
        reader: LogReader,
        codec: Callable[[], CursorCodec],
        ring_size: int,
        on_forget: Callable[[Connection], None],
        unavailable_after: float,
        observe_lag: Callable[[float], None] | None = None,
        catchup_page_events: int = EdgeSettings.catchup_page_events,
        tracer: FanoutTracer | None = None,
    ) -> None:
        self.nats = connection
        self.reader = reader
        self._codec = codec
        self.ring_size = ring_size
        self.catchup_page_events = catchup_page_events
        self._on_forget = on_forget
        self.unavailable_after = unavailable_after
        # Seconds from an event being stored in the log to its bytes being written to client sockets.
        self.observe_lag = observe_lag
        # None when tracing is off: the fan-out path then does no tracing work at all.
        self.tracer = tracer
        self._timestamps = TimestampParser()
        # The stored time of the live event being fanned out (None outside a fan-out), and of those written
        # since the last flush: the flush observes their lag to the socket.
        self._fanning_out: float | None = None
        self._written: list[float] = []
        self.channels: dict[str, Channel] = {}
        self.user_feed: UserFeed | None = None
        self.stats = HubStats()
        self._dirty: list[Outbox] = []
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        connection.on_state_change(self._on_nats_state)

    @property
    def codec(self) -> CursorCodec:
        return self._codec()

    def mark_dirty(self, outbox: Outbox) -> None:
        """``outbox`` has new bytes: write them at the end of this loop iteration, with everything else new."""
        self._dirty.append(outbox)
        if outbox.since is None:
            outbox.since = self._fanning_out
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """One write per stream per loop iteration, however many events it received meanwhile."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for outbox in dirty:
            outbox.flush()
        if self._written:
            written, self._written = self._written, []
            observe = self.observe_lag
            if observe is not None:
                now = time.time()
                for stored in written:
                    observe(max(0.0, now - stored))

    def receiving(self, headers: dict[str, str]) -> float | None:
        """A live event arrives: when the log stored it (seconds since the epoch), if its headers say."""
        stamp = headers.get(TIMESTAMP_HEADER)
        stored = self._fanning_out = self._timestamps.seconds(stamp) if stamp is not None else None
        return stored

    def offered(self, stored: float | None, delivered_before: int) -> None:
        """The live event stored at ``stored`` was offered to its channel's members."""
        self._fanning_out = None
        if stored is not None and self.stats.deliveries != delivered_before:
            self._written.append(stored)  # its lag is observed when the flush writes it

    def join(self, connection: Connection, subject: str, after: int) -> None:
        """Make ``connection`` receive every event on ``subject`` after sequence ``after``.

        The connection is held until the channel has handed it everything between
        ``after`` and the live flow.
        """
        connection.hold()
        connection.channels[subject] = after
        channel = self._channel_for(subject)
        if channel is None:
            channel = Channel(self, subject, covered_from=after)
            self.channels[subject] = channel
            channel.open(connection, after)
        else:
            channel.admit(connection, after)

    def leave(self, connection: Connection, subject: str) -> None:
        connection.channels.pop(subject, None)
        channel = self._channel_for(subject)
        if channel is not None:
            channel.remove(connection)
            if not channel.members and not channel.waiting and not channel.persistent:
                self._close(channel)

    def open_user_feed(self) -> None:
        """Start following ``live.user.*`` for the connections of this worker (once the log is open)."""
        if self.user_feed is None:
            self.user_feed = UserFeed(self)
            self.channels[self.user_feed.subject] = self.user_feed
            self.user_feed.start()

    def _channel_for(self, subject: str) -> Channel | None:
        if self.user_feed is not None and subject.startswith(USER_PREFIX):
            return self.user_feed
        return self.channels.get(subject)

    def forget(self, connection: Connection) -> None:
        """The connection ended: leave every channel, free its slot."""
        for subject in list(connection.channels):
            self.leave(connection, subject)
        self._on_forget(connection)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for channel in list(self.channels.values()):
            self._close(channel)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def subscription_count(self) -> int:
        return sum(1 for channel in self.channels.values() if channel.subscription is not None)

    def _close(self, channel: Channel) -> None:
        if self.channels.get(channel.subject) is channel:
            del self.channels[channel.subject]
        channel.shut()

    async def watch_leader_changes(self, stream: str) -> None:
        """Treat a new stream leader like a reconnect: hold every channel and probe the log.

        Events the old leader stored but whose republished copies were lost with
        it leave a hole on their subjects that no later message on *other*
        subjects reveals. The advisory is published by the new leader before it
        republishes anything, so, handled in wire order, it holds every member
        before a newer event can pass the hole.
        """
        await subscribe_in_wire_order(self.nats.client, LEADER_ELECTED_ADVISORY + stream, self._on_leader_elected)

    def _on_leader_elected(self, _: Msg) -> None:
        log.info("edge.stream_leader_elected", channels=len(self.channels))
        self.stats.leader_changes += 1
        for channel in list(self.channels.values()):
            channel.suspend()
            channel.request_probe()

    def _on_nats_state(self, connected: bool) -> None:
        for channel in list(self.channels.values()):
            if connected:
                # Whatever was published while we were away never reached the live subjects.
                channel.request_probe()
            else:
                channel.suspend()
