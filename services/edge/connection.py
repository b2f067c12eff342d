"""One open stream: what its user may see, what it has been sent, and what waits to be written.

Events reach a connection through ``offer`` from the channels it has joined,
already decoded and framed. Delivery is strictly in cursor order: while a
channel the connection needs is catching up from the log (a join, a gap
repair), the connection is *held* and buffers what arrives; when the last hold
is released the buffer is delivered sorted, so events from several channels
interleave exactly as in the log. Membership events are applied at their
position, so every later event is checked against the memberships in force
there (CONTRACT §4).
"""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING

from userstream.edge import sse
from userstream.edge.events import EventKind, LiveEvent
from userstream.eventlog.subjects import org_subject
from userstream.events.model import Action
from userstream.memberships import apply_membership_event
from userstream.permissions import may_read_entity, may_read_public
from userstream.policy import Policy

if TYPE_CHECKING:
    from userstream.edge.channels import Hub

_ids = itertools.count(1)


def _sequence_of(event: LiveEvent) -> int:
    return event.sequence


class Connection:
    """The state of one stream. All methods are synchronous and run on the worker's event loop."""

    __slots__ = (
        "buffer",
        "buffered",
        "channels",
        "close_reason",
        "closed",
        "cut_off",
        "held",
        "held_bytes",
        "holds",
        "hub",
        "id",
        "max_bytes",
        "memberships",
        "offset_cursor",
        "offset_sent",
        "offset_target",
        "policy",
        "position",
        "public",
        "resumed",
        "system_role",
        "timers",
        "user_id",
        "wakeup",
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
        # The `offset` event is sent once every event up to `offset_target` is out.
        self.offset_target = offset_target
        self.offset_cursor = offset_cursor
        self.offset_sent = False
        self.resumed = resumed
        # Held until the connect-time catch-up completes; see `release`.
        self.holds = 1
        self.held: list[LiveEvent] = []
        self.held_bytes = 0
        self.channels: set[str] = set()
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.max_bytes = max_bytes
        self.wakeup = asyncio.Event()
        self.closed = False
        self.cut_off = False
        self.close_reason: str | None = None
        self.timers: list[asyncio.TimerHandle] = []

    # -- the fan-out path -------------------------------------------------------------------

    def offer(self, event: LiveEvent) -> None:
        """An event of a joined channel: deliver it now, or keep it until the holds are released."""
        if event.sequence <= self.position:
            return
        if self.holds:
            self.held.append(event)
            # Held events count against the same limit as queued bytes: a catch-up that
            # takes too long must not let memory grow without bound.
            self.held_bytes += len(event.frame)
            if self.held_bytes > self.max_bytes:
                self._overflow()
        else:
            self._deliver(event)

    def hold(self) -> None:
        self.holds += 1

    def release(self) -> None:
        """One catch-up finished; when none is left, deliver what was held, in cursor order."""
        self.holds -= 1
        if self.holds or self.closed:
            return
        if self.held:
            pending, self.held = self.held, []
            self.held_bytes = 0
            if not self._deliver_in_order(pending):
                return
        if not self.offset_sent:
            self._send_offset()

    def _deliver_in_order(self, pending: list[LiveEvent]) -> bool:
        """Deliver ``pending`` sorted; False if delivery stopped (closed, or a membership event began a join)."""
        pending.sort(key=_sequence_of)
        for index, event in enumerate(pending):
            if event.sequence <= self.position:
                continue  # offered twice (a catch-up overlapping the live flow)
            self._deliver(event)
            if self.closed:
                return False
            if self.holds:
                self.held = pending[index + 1 :]
                self.held_bytes = sum(len(rest.frame) for rest in self.held)
                return False
        return True

    def _deliver(self, event: LiveEvent) -> None:
        if not self.offset_sent and event.sequence > self.offset_target:
            self._send_offset()
        self.position = event.sequence
        if event.kind is EventKind.MEMBERSHIP:
            self._apply_membership(event)
            return
        if self.public:
            if event.public and may_read_public(self.policy, event.entity_type, marked_public=True):
                self.write(event.frame)
            return
        role = self.memberships.get(event.organization_id)
        if may_read_entity(self.policy, self.system_role, role, event.entity_type):
            self.write(event.frame)
        if event.is_organization_deletion:
            self.hub.leave(self, org_subject(event.organization_id))

    def _apply_membership(self, event: LiveEvent) -> None:
        if event.user_id != self.user_id:
            return  # only the member's own channel carries these; never leak another user's
        organization_id = event.organization_id
        previous = apply_membership_event(self.memberships, event.action, organization_id, event.role)
        frame = event.frame
        if event.action is Action.DELETE and event.role is None and previous is not None:
            frame = event.frame_with_role(previous)
        self.write(frame)
        subject = org_subject(organization_id)
        if event.action is Action.DELETE:
            if subject in self.channels:
                self.hub.leave(self, subject)
        elif subject not in self.channels:
            self.hub.join(self, subject, after=event.sequence)

    def _send_offset(self) -> None:
        self.offset_sent = True
        self.write(sse.offset_frame(self.offset_cursor, resumed=self.resumed))

    # -- the output side ---------------------------------------------------------------------

    def write(self, frame: bytes) -> None:
        """Queue bytes for the writer; past the limit the connection is cut off as a slow consumer."""
        if self.closed:
            return
        self.buffer.append(frame)
        self.buffered += len(frame)
        if self.buffered > self.max_bytes:
            self._overflow()
            return
        self.wakeup.set()

    def _overflow(self) -> None:
        """More is waiting than the limit allows: drop it all and end the stream; the client resumes."""
        self.cut_off = True
        self.buffer.clear()
        self.buffered = 0
        self.held.clear()
        self.held_bytes = 0
        self.close("slow-consumer")

    def take(self) -> bytes:
        """Everything queued, as one write."""
        chunk = b"".join(self.buffer)
        self.buffer.clear()
        self.buffered = 0
        return chunk

    def close(self, reason: str, retry_ms: int | None = None) -> None:
        """Send `close` and end the stream; the hub forgets the connection at once."""
        if self.closed:
            return
        if retry_ms is not None:
            self.buffer.append(sse.retry_frame(retry_ms))
        self.buffer.append(sse.close_frame(reason))
        self.closed = True
        self.close_reason = reason
        self.wakeup.set()
        self.hub.forget(self)

    def end(self) -> None:
        """The client went away: forget the connection without writing anything."""
        if not self.closed:
            self.closed = True
            self.close_reason = "disconnected"
            self.hub.forget(self)
        self.wakeup.set()
