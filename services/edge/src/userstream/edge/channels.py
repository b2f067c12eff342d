"""Channels: one live NATS subscription per subject in use on this worker, shared by its connections.

A channel follows one subject of the log (``org.acme``, ``user.alice``, or
``org.*`` for the public stream) through its republished ``live.`` subject. It
decodes and frames each event once, and offers it to every member connection.
It knows which part of the subject it has seen: everything after
``covered_from``, tracked per concrete subject through ``Nats-Last-Sequence``.
A jump in that header, or a NATS reconnect, makes it fetch the missed events
from the log before anything newer (gap repair); its members are held meanwhile
so they still receive everything in order.

Recent events stay in a ring so a connection joining slightly behind the
channel (a reconnect, a new membership) is served from memory.
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from userstream.edge._live_queue import subscribe_in_wire_order
from userstream.edge.catchup import catch_up
from userstream.edge.connection import Connection
from userstream.edge.events import LiveEvent, decode_event
from userstream.edge.fanout_trace import is_sampled
from userstream.errors import UnavailableError
from userstream.eventlog.reader import StoredMessage
from userstream.eventlog.subjects import (
    LAST_SEQUENCE_HEADER,
    PUBLIC_HEADER,
    SEQUENCE_HEADER,
    SUBJECT_HEADER,
    live_subject,
)
from userstream.tracing import TRACEPARENT_HEADER

if TYPE_CHECKING:
    from userstream.edge.hub import Hub

log = structlog.get_logger("userstream.edge")

_RETRY_WAIT = 0.25
Work = Callable[[], Coroutine[Any, Any, None]]


class State(enum.Enum):
    OPENING = "opening"  # subscribing and catching up from the log
    READY = "ready"  # following the live subject
    REPAIRING = "repairing"  # fetching events the live subject skipped
    SUSPENDED = "suspended"  # NATS is away: members held until the probe after the reconnect
    CLOSED = "closed"


class Channel:
    """One subject followed live, with catch-up from the log when the live flow has holes."""

    # A persistent channel keeps retrying while NATS is away instead of giving up on its members.
    persistent = False

    def __init__(self, hub: Hub, subject: str, covered_from: int) -> None:
        self.hub = hub
        self.subject = subject
        self.state = State.OPENING
        self.members: set[Connection] = set()
        self._members: tuple[Connection, ...] = ()
        self._members_changed = False
        # Connections waiting for the channel to be READY, with the sequence they need events after.
        self.waiting: list[tuple[Connection, int]] = []
        self.covered_from = covered_from
        self.last: dict[str, int] = {}
        self.ring: deque[LiveEvent] = deque()
        self.ring_floor = covered_from
        self.pending: deque[Msg] = deque()
        self.subscription: Subscription | None = None
        self._held: list[Connection] = []
        self._probe_needed = False

    # -- membership ---------------------------------------------------------------------------

    def open(self, first: Connection, after: int) -> None:
        """Subscribe and follow from the subject's end; ``first`` joins like any other once READY."""
        self.waiting.append((first, after))
        self.hub.spawn(self._run(self._open))

    def admit(self, connection: Connection, after: int) -> None:
        if self.state is State.READY:
            asyncio.get_running_loop().call_soon(self._complete_join, connection, after)
        else:
            self.waiting.append((connection, after))

    def remove(self, connection: Connection) -> None:
        if connection in self.members:
            self.members.discard(connection)
            self._members_changed = True
        self.waiting = [(waiting, after) for waiting, after in self.waiting if waiting is not connection]

    def _add(self, connection: Connection) -> None:
        self.members.add(connection)
        self._members_changed = True

    @property
    def _member_list(self) -> tuple[Connection, ...]:
        """The members as a tuple to iterate while offers change membership; rebuilt lazily (storms stay linear)."""
        if self._members_changed:
            self._members = tuple(self.members)
            self._members_changed = False
        return self._members

    def _complete_join(self, connection: Connection, after: int) -> None:
        subject = self._joined_subject(connection)
        if connection.closed or subject not in connection.channels:
            connection.release()
            return
        if self.state is State.CLOSED:
            # The last member left between `admit` and now (a join in flight is not a member yet), and that
            # closed the channel: join afresh, else this connection would never hear of the subject again.
            self.hub.join(connection, subject, after)
            connection.release()
            return
        if self.state is not State.READY:
            self.waiting.append((connection, after))
            return
        self._add(connection)
        for event in self._ring_events(subject, after):
            connection.offer(event, False)
        if after < self.ring_floor:
            self.hub.spawn(self._fetch_for(connection, subject, after, self.ring_floor))
        else:
            connection.release()

    def _joined_subject(self, connection: Connection) -> str:
        """The subject ``connection`` joined this channel under (the user feed serves many)."""
        return self.subject

    def _ring_events(self, subject: str, after: int) -> list[LiveEvent]:
        """Recent events a connection joining at ``after`` still needs."""
        return [event for event in self.ring if event.sequence > after]

    async def _fetch_for(self, connection: Connection, subject: str, after: int, until: int) -> None:
        """The part a joining connection needs that the ring no longer holds, read a page at a time."""
        released = False
        try:
            # A read ends at a sequence of this subject, but `until` may be the position the channel
            # opened at, which can belong to another subject: with nothing on this subject at or after
            # it, the read would wait for ever. The subject's last sequence bounds it then.
            last = await self.hub.reader.last_sequence(subject)
            released = True  # catch_up takes the join's hold over
            await catch_up(self.hub, connection, subject, after, min(until, last))
        except UnavailableError:
            connection.close("unavailable")
        finally:
            if not released:
                connection.release()

    # -- the live path --------------------------------------------------------------------------

    def on_live(self, message: Msg) -> None:
        """Called synchronously, in wire order, for each message on the live subject."""
        if self.state is State.READY:
            self._accept(message)
        elif self.state is not State.CLOSED:
            self.pending.append(message)

    def _accept(self, message: Msg) -> None:
        headers = message.headers or {}
        sequence = int(headers[SEQUENCE_HEADER])
        subject = headers[SUBJECT_HEADER]
        expected = self.last.get(subject, self.covered_from)
        if sequence <= expected:
            return
        previous = int(headers[LAST_SEQUENCE_HEADER])
        if previous > expected:
            # The live flow skipped events on this subject: fetch them before anything newer.
            self.pending.appendleft(message)
            self._begin(lambda: self._repair(subject, expected, previous))
            return
        # The hub measures each live event's lag (and traces its fan-out when tracing is on) around the offer.
        hub = self.hub
        stored = hub.receiving(headers)
        tracer = hub.tracer
        traced: str | None = None  # the traceparent of a sampled event, when tracing is on
        started = 0
        if tracer is not None and is_sampled(traceparent := headers.get(TRACEPARENT_HEADER)):
            traced, started = traceparent, time.time_ns()
        delivered = hub.stats.deliveries
        self._emit(
            StoredMessage(sequence, subject, message.data, PUBLIC_HEADER in headers), live=True, stored_at=stored
        )
        if traced is not None and tracer is not None:
            tracer.record(traced, subject, hub.codec.encode(sequence), started, hub.stats.deliveries - delivered)
        hub.offered(stored, delivered)

    def _emit(
        self, message: StoredMessage, *, live: bool = False, repaired: bool = False, stored_at: float | None = None
    ) -> None:
        """Decode and frame once, then offer to every member.

        ``live``: from the live subject, not a read. ``repaired``: found by a gap
        repair or probe, i.e. missed by the live flow.
        """
        if message.sequence <= self.last.get(message.subject, self.covered_from):
            return
        self.last[message.subject] = message.sequence
        event = decode_event(message, self.hub.codec)
        if event is None:
            return
        event.repaired = repaired
        event.stored_at = stored_at
        self.hub.stats.events += 1
        self._remember(event)
        self._offer(event, live)

    def _offer(self, event: LiveEvent, live: bool) -> None:
        for member in self._member_list:
            member.offer(event, live)

    def _remember(self, event: LiveEvent) -> None:
        ring = self.ring
        ring.append(event)
        if len(ring) > self.hub.ring_size:
            evicted = ring.popleft()
            self.ring_floor = max(self.ring_floor, evicted.sequence)

    def _drain_pending(self) -> None:
        while self.pending and self.state is State.READY:
            self._accept(self.pending.popleft())

    # -- catching up from the log ----------------------------------------------------------------

    def _begin(self, work: Work) -> None:
        """Hold every member and run ``work``; READY again when it completes."""
        if self.state is not State.SUSPENDED:  # suspended: held already
            self._hold_members()
        self.state = State.REPAIRING
        self.hub.spawn(self._run(work))

    def _hold_members(self) -> None:
        for member in self._member_list:
            member.hold()
        self._held.extend(self._member_list)

    async def _run(self, work: Work) -> None:
        """Run one catch-up, retrying while NATS is away; then resume the live flow and release members."""
        try:
            give_up_after = math.inf if self.persistent else self.hub.unavailable_after
            await _retrying(work, give_up_after)
            # A reconnect during the work: probe before going live, so nothing older follows newer.
            while self._probe_needed and self.state is not State.CLOSED:
                self._probe_needed = False
                await _retrying(self._probe, give_up_after)
        except UnavailableError:
            # Clients reconnect with their cursor and resume elsewhere or later; nothing is lost.
            log.warning("edge.channel_unavailable", subject=self.subject)
            # Close before releasing: a release would deliver what other channels buffered meanwhile,
            # events after the ones this channel never fetched, and the client would resume past them.
            for member in [*self._member_list, *(connection for connection, _ in self.waiting)]:
                member.close("unavailable")
            self._release_held()
            return
        except asyncio.CancelledError:
            self._release_held()
            raise
        if self.state is State.CLOSED:
            self._release_held()
            return
        self.state = State.READY
        self._drain_pending()
        self._release_held()
        self._admit_waiting()

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for member in held:
            member.release()

    def _admit_waiting(self) -> None:
        waiting, self.waiting = self.waiting, []
        for connection, after in waiting:
            self._complete_join(connection, after)

    async def _open(self) -> None:
        """Subscribe, then cover the subject from its last stored event on: older ones are read per joiner."""
        await self._subscribe()
        if not self.last:
            self.covered_from = self.ring_floor = await self.hub.reader.last_sequence(self.subject)

    async def _subscribe(self) -> None:
        """Subscribe to the live subject, once; when this returns, everything stored later arrives live."""
        if self.subscription is None:
            try:
                subscription = await subscribe_in_wire_order(
                    self.hub.nats.client, live_subject(self.subject), self.on_live
                )
                if self.state is State.CLOSED:
                    await _unsubscribe(subscription)
                    return
                self.subscription = subscription
                # Once the server has the subscription, everything stored later arrives live.
                await self.hub.nats.client.flush()
            except (nats.errors.Error, TimeoutError) as exc:
                raise UnavailableError(f"cannot subscribe to {self.subject}") from exc

    async def _repair(self, subject: str, after: int, until: int) -> None:
        self.hub.stats.gap_repairs += 1
        log.info("edge.gap_repair", subject=subject, after=after, until=until)
        for message in await self._read(subject, after, until):
            self._emit(message, repaired=True)
        if self.last.get(subject, self.covered_from) < until:
            # The log no longer holds them (retention): nothing to deliver, move on.
            log.error("edge.gap_unrecoverable", subject=subject, after=after, until=until)
            self.last[subject] = until

    def suspend(self) -> None:
        """NATS went away: hold the members at once.

        After the reconnect, live messages may arrive on some channels before
        others have probed the log for what they missed; were the members not
        held from the disconnect on, a newer event could be delivered before an
        older one found by a probe, which would then be dropped as already passed.
        """
        if self.state is State.READY:
            self._hold_members()
            self.state = State.SUSPENDED
        elif self.state in (State.OPENING, State.REPAIRING):
            self._probe_needed = True

    def request_probe(self) -> None:
        if self.state in (State.READY, State.SUSPENDED):
            self._begin(self._probe)
        elif self.state is not State.CLOSED:
            self._probe_needed = True

    async def _probe(self) -> None:
        """After a NATS reconnect: fetch whatever arrived on the subject while we were away."""
        until = await self.hub.reader.last_sequence(self.subject)
        seen = max([self.covered_from, *self.last.values()])
        for message in await self._read(self.subject, seen, until):
            self._emit(message, repaired=True)

    async def _read(self, subject: str, after: int, until: int) -> list[StoredMessage]:
        self.hub.stats.catchup_reads += 1
        return await self.hub.reader.read(subject, after, until)

    def shut(self) -> None:
        self.state = State.CLOSED
        self.pending.clear()
        self.ring.clear()
        subscription, self.subscription = self.subscription, None
        if subscription is not None:
            self.hub.spawn(_unsubscribe(subscription))


async def _retrying(work: Work, give_up_after: float) -> None:
    """Run ``work`` until it succeeds; UnavailableError once it has failed for ``give_up_after`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + give_up_after
    while True:
        try:
            await work()
        except UnavailableError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(_RETRY_WAIT)
        else:
            return


async def _unsubscribe(subscription: Subscription) -> None:
    try:
        await subscription.unsubscribe()
    except Exception:  # the connection may be closed or reconnecting; the server forgets it then
        log.debug("edge.unsubscribe_failed", subject=subscription.subject)
