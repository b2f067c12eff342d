"""One open stream: what its user may see, what it has been sent, and what waits to be written.

Events reach a connection through ``offer`` from the channels it has joined,
already decoded and framed. Delivery is strictly in cursor order: while a
channel the connection needs is catching up from the log (a join, a gap
repair), the connection is *held* and buffers what arrives; when the last hold
is released the buffer is delivered sorted, so events from several channels
interleave exactly as in the log. Membership events are applied at their
position, so every later event is checked against the memberships in force
there (CONTRACT §4).

What a catch-up reads back from the log for this connection (a resume, a new
membership) is read a page at a time (``catchup.py``), and the next page only
when the writer has taken the last one: the connection is not held for a
catch-up but delivers up to its *frontier*, the position up to which every
catch-up in progress has offered its events. A resume of any length costs a
page of memory and flows at the client's pace. What a channel reads for all
its members (a gap repair) is handed to the writer a page at a time too. Only
what arrives live counts against the queue limit, so a client that stops
reading is still cut off.
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from typing import TYPE_CHECKING

from userstream.edge import sse
from userstream.edge.events import EventKind, LiveEvent
from userstream.edge.outbox import Outbox
from userstream.eventlog.subjects import org_subject
from userstream.events.model import Action
from userstream.memberships import apply_membership_event
from userstream.permissions import may_read_entity, may_read_public
from userstream.policy import Policy

if TYPE_CHECKING:
    from userstream.edge.catchup import CatchUp
    from userstream.edge.hub import Hub

_ids = itertools.count(1)
# A catch-up tops up the writer's queue to this fraction of the queue limit each time it takes.
_PAGE_FRACTION = 4

# An event waiting for delivery, and whether it arrived live (live events count against the limit).
Waiting = tuple[LiveEvent, bool]
# Shared by every connection without a backlog (most of them; a deque per idle stream costs 0.6 KB).
# Never appended to: a backlog is always a new deque (`release`, `_enqueue` only extends a non-empty one).
_NO_BACKLOG: deque[Waiting] = deque()


def _sequence_of(entry: Waiting) -> int:
    return entry[0].sequence


class Connection:
    """The state of one stream. All methods are synchronous and run on the worker's event loop."""

    __slots__ = (
        "backlog",
        "catchups",
        "channels",
        "close_reason",
        "closed",
        "cut_off",
        "held",
        "holds",
        "hub",
        "id",
        "max_bytes",
        "memberships",
        "offset_cursor",
        "offset_sent",
        "offset_target",
        "outbox",
        "policy",
        "position",
        "public",
        "resumed",
        "system_role",
        "user_id",
        "waiting",
    )

    def __init__(
        self,
        *,
        hub: Hub,
        policy: Policy,
        user_id: str | None,
        system_role: str,
        memberships: dict[str, str],
        position: int,
        offset_target: int,
        offset_cursor: str,
        resumed: bool,
        max_bytes: int,
    ) -> None:
        self.id = next(_ids)
        self.hub = hub
        self.policy = policy
        self.user_id = user_id  # None on the public stream
        self.public = user_id is None
        self.system_role = system_role
        self.memberships = memberships
        # Every event at or before `position` has been delivered or skipped.
        self.position = position
        # The `offset` event is sent once every event up to `offset_target` is out. Its cursor
        # is the last event replayed before it, else the start (CONTRACT §5).
        self.offset_target = offset_target
        self.offset_cursor = offset_cursor
        self.offset_sent = False
        self.resumed = resumed
        # Held until the connect-time catch-up completes; see `release`.
        self.holds = 1
        self.held: list[Waiting] = []
        # Released, in cursor order, waiting for room in the writer's queue; see `pump`.
        self.backlog: deque[Waiting] = _NO_BACKLOG
        # Paged reads of the log in progress for this connection; nothing past the lowest frontier goes out.
        self.catchups: tuple[CatchUp, ...] = ()
        # Bytes of live events in `held` and `backlog`: they count against `max_bytes`.
        self.waiting = 0
        # Subjects joined, each with the sequence after which this connection needs its events.
        self.channels: dict[str, int] = {}
        self.outbox = Outbox(hub, self.pump)
        self.max_bytes = max_bytes
        self.closed = False
        self.cut_off = False
        self.close_reason: str | None = None

    # -- the fan-out path -------------------------------------------------------------------

    def offer(self, event: LiveEvent, live: bool = True) -> None:
        """An event of a joined channel: deliver it now, or keep it until what comes before it is out.

        ``live`` is False for events read back from the log (a catch-up): their
        number is bounded by the range read, not by how slowly the client reads,
        so they wait without counting against the queue limit.
        """
        if event.sequence <= self.position:
            if event.repaired and event.sequence > self.channels.get(event.subject, event.sequence):
                self._resync(event)
            return
        if self.holds or (self.catchups and event.sequence > self.frontier):
            self.held.append((event, live))
            if live:
                self._count_waiting(len(event.frame))
        elif self.backlog:
            self._enqueue(event, live)
        else:
            self._deliver(event)

    def hold(self) -> None:
        self.holds += 1

    def release(self) -> None:
        """One hold ended; when none is left, deliver what was held up to the frontier, in cursor order."""
        self.holds -= 1
        if self.holds or self.closed:
            return
        self._advance()

    @property
    def frontier(self) -> float:
        """Every catch-up in progress has offered its events up to here (infinite: none in progress)."""
        catchups = self.catchups
        if not catchups:
            return float("inf")
        return min(catchup.frontier for catchup in catchups)

    def begin_catchup(self, catchup: CatchUp) -> None:
        self.catchups = (*self.catchups, catchup)

    def caught_up(self, catchup: CatchUp, frontier: int) -> None:
        """``catchup`` has offered every event up to ``frontier``: deliver what may go out now."""
        catchup.frontier = frontier
        if not self.holds and not self.closed:
            self._advance()

    def end_catchup(self, catchup: CatchUp) -> None:
        self.catchups = tuple(other for other in self.catchups if other is not catchup)
        if not self.holds and not self.closed:
            self._advance()

    def room_for(self, catchup: CatchUp) -> bool:
        """Whether ``catchup`` should read its next page now.

        Only the catch-up that holds the frontier back reads, and only once the
        writer has taken what was released: a catch-up costs a page at a time.
        """
        if self.closed:
            return True  # to see that it is over
        if self.holds or self.outbox.buffered >= self.max_bytes // _PAGE_FRACTION:
            return False
        frontier = self.frontier
        if self.backlog and self.backlog[0][0].sequence <= frontier:
            return False  # released events the writer has not taken yet
        return catchup.frontier <= frontier

    def _advance(self) -> None:
        """Move what was held up to the frontier to the backlog, in cursor order, and pump it."""
        held = self.held
        if held:
            held.sort(key=_sequence_of)
            frontier = self.frontier
            cut = len(held) if frontier == float("inf") else bisect.bisect_right(held, frontier, key=_sequence_of)
            if cut:
                ready = held[:cut]
                self.held = held[cut:]
                if self.backlog:
                    ready = sorted([*self.backlog, *ready], key=_sequence_of)
                self.backlog = deque(ready)
        self.pump()

    def _wake_catchups(self) -> None:
        for catchup in self.catchups:
            if self.room_for(catchup):
                catchup.wake()

    def pump(self) -> None:
        """Move released events to the writer's queue up to a page; send `offset` once all are out.

        Called on release and each time the writer takes the queue, so a long
        catch-up is written at the pace the client reads it.
        """
        backlog = self.backlog
        page = self.max_bytes // _PAGE_FRACTION
        outbox = self.outbox
        # Events released before a new catch-up began may lie past its frontier: they wait for it.
        frontier = self.frontier if self.catchups else float("inf")
        while backlog and not self.holds and not self.closed and outbox.buffered < page:
            if backlog[0][0].sequence > frontier:
                break
            event, live = backlog.popleft()
            if live:
                self.waiting -= len(event.frame)
            if event.sequence > self.position:  # else offered twice (a catch-up overlapping the live flow)
                self._deliver(event)
        if self.catchups:
            self._wake_catchups()
        elif not backlog and not self.holds and not self.offset_sent and not self.closed:
            self._send_offset()

    def _enqueue(self, event: LiveEvent, live: bool) -> None:
        """Queue ``event`` behind the backlog, in cursor order."""
        backlog = self.backlog
        if event.sequence > backlog[-1][0].sequence:
            backlog.append((event, live))
        else:  # rare: a live copy overtaken by a catch-up that read past it
            self.backlog = deque(sorted([*backlog, (event, live)], key=_sequence_of))
        if live:
            self._count_waiting(len(event.frame))

    def _count_waiting(self, size: int) -> None:
        # Live events waiting behind a catch-up count against the same limit as queued bytes:
        # a client that stops reading, or a catch-up that takes too long, must not grow memory.
        self.waiting += size
        if self.outbox.buffered + self.waiting > self.max_bytes:
            self._overflow()

    def _deliver(self, event: LiveEvent) -> None:
        if not self.offset_sent and event.sequence > self.offset_target:
            self._send_offset()
        self.position = event.sequence
        if event.kind is EventKind.MEMBERSHIP:
            self._apply_membership(event)
            return
        if self.public:
            if event.public and may_read_public(self.policy, event.entity_type, marked_public=True):
                self._write_change(event, event.frame)
            return
        if event.subject not in self.channels:
            # The channel was dropped (organization deleted) while later events of it were still
            # queued here: they must not reach the client, as they would not have live.
            return
        role = self.memberships.get(event.organization_id)
        if may_read_entity(self.policy, self.system_role, role, event.entity_type):
            self._write_change(event, event.frame)
        if event.is_organization_deletion:
            # Final (CONTRACT §2): the organization has no members from here on and nothing follows it.
            self.memberships.pop(event.organization_id, None)
            self.hub.leave(self, org_subject(event.organization_id))

    def _apply_membership(self, event: LiveEvent) -> None:
        if event.user_id != self.user_id:
            return  # only the member's own channel carries these; never leak another user's
        organization_id = event.organization_id
        previous = apply_membership_event(self.memberships, event.action, organization_id, event.role)
        frame = event.frame
        if event.action is Action.DELETE and event.role is None and previous is not None:
            frame = event.frame_with_role(previous)
        self._write_change(event, frame)
        subject = org_subject(organization_id)
        if event.action is Action.DELETE:
            if subject in self.channels:
                self.hub.leave(self, subject)
        elif subject not in self.channels:
            self.hub.join(self, subject, after=event.sequence)

    def _write_change(self, event: LiveEvent, frame: bytes) -> None:
        self.write(frame)
        self.hub.stats.deliveries += 1
        if not self.offset_sent:
            self.offset_cursor = event.cursor  # replayed: `offset` names the last one

    def _send_offset(self) -> None:
        self.offset_sent = True
        self.write(sse.offset_frame(self.offset_cursor, resumed=self.resumed))

    def oldest_waiting(self) -> float | None:
        """When the oldest live event not yet written to this stream's socket was stored (for the lag gauge)."""
        oldest = self.outbox.since
        for event, live in self.held:
            if live and event.stored_at is not None and (oldest is None or event.stored_at < oldest):
                oldest = event.stored_at
        for event, live in self.backlog:  # in cursor order: the first live one is the oldest
            if live and event.stored_at is not None:
                if oldest is None or event.stored_at < oldest:
                    oldest = event.stored_at
                break
        return oldest

    # -- the output side ---------------------------------------------------------------------

    def write(self, frame: bytes) -> None:
        """Queue bytes for the socket; past the limit the connection is cut off as a slow consumer."""
        if self.closed:
            return
        outbox = self.outbox
        outbox.append(frame)
        if outbox.buffered + self.waiting > self.max_bytes:
            self._overflow()

    def _overflow(self) -> None:
        """More is waiting than the limit allows: drop it all and end the stream; the client resumes."""
        self.cut_off = True
        self.outbox.clear()
        self.close("slow-consumer")

    def _drop_waiting(self) -> None:
        """The stream ends: what was not delivered is not needed (the client resumes from its cursor)."""
        self.held = []
        self.backlog = _NO_BACKLOG
        self.waiting = 0
        for catchup in self.catchups:
            catchup.wake()  # to stop reading

    def _resync(self, missed: LiveEvent) -> None:
        """The live flow lost an event this stream needed and newer ones already went out.

        It cannot be delivered in order any more. Rather than lose it, end the
        stream with its `id:` set just before it: the client resumes from there
        and receives it, at the price of receiving again the few events after it.
        Only a loss inside the NATS cluster that no disconnect or leader change
        revealed leads here (docs/edge.md).
        """
        self.hub.stats.resyncs += 1
        self.close("resync", rewind_to=self.hub.codec.encode(missed.sequence - 1))

    def close(self, reason: str, retry_ms: int | None = None, rewind_to: str | None = None) -> None:
        """Send `close` and end the stream; the hub forgets the connection at once.

        ``rewind_to`` sets the client's last event id, so its reconnect resumes after that cursor.
        """
        if self.closed:
            return
        if retry_ms is not None:
            self.outbox.append(sse.retry_frame(retry_ms))
        self.outbox.append(sse.close_frame(reason, rewind_to))
        self.closed = True
        self.close_reason = reason
        self._drop_waiting()
        self.outbox.end()
        self.hub.forget(self)

    def end(self) -> None:
        """The client went away: forget the connection without writing anything."""
        if not self.closed:
            self.closed = True
            self.close_reason = "disconnected"
            self._drop_waiting()
            self.outbox.clear()
            self.hub.forget(self)
