"""One benchmark client: a raw asyncio protocol reading one ``/me/stream`` and checking what it gets.

Per connection it checks that cursors strictly increase (an event at or
before the last cursor is a duplicate or out of order), that every event
belongs to one of the user's organizations, and counts the events of the
current step per organization; the load generator compares those counts
with what the publisher recorded (count equal per organization + no foreign
event + strictly increasing cursors = exactly the expected set, once).
Latency is the receive time minus the send time the publisher stamped into
``data.t``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import cast

import msgspec

from benchmarks._histogram import Histogram
from benchmarks._wire import HEAD_END, Dechunker, FrameSplitter, frame_fields, parse_head


class BenchData(msgspec.Struct):
    """What the publisher writes into ``data``: the step and the send time (Unix seconds)."""

    s: int = -1
    t: float = 0.0


class ChangeView(msgspec.Struct, rename="camel"):
    organization_id: str = ""
    data: BenchData | None = None


_CHANGE = msgspec.json.Decoder(ChangeView)
_OFFSET = msgspec.json.Decoder(dict[str, object])


class Session:
    """What all clients of one load-generator process share: the current step and its measurements."""

    __slots__ = ("first_rx", "histogram", "last_rx", "offsets", "on_change", "step")

    def __init__(self) -> None:
        self.step = -1
        self.histogram = Histogram()
        self.first_rx = 0.0
        self.last_rx = 0.0
        self.offsets = 0  # clients that have received their `offset` event
        self.on_change: Callable[[], None] | None = None

    def begin(self, step: int) -> None:
        self.step = step
        self.histogram = Histogram()
        self.first_rx = 0.0
        self.last_rx = 0.0


class StreamClient(asyncio.Protocol):
    """One SSE connection. ``request`` is the full HTTP request to send once connected."""

    def __init__(self, session: Session, orgs: frozenset[str], request: bytes, clock: Callable[[], float] = time.time):
        self.session = session
        self.orgs = orgs
        self.request = request
        self.clock = clock
        self.transport: asyncio.Transport | None = None
        self._head = b""
        self._dechunker: Dechunker | None = None
        self._frames = FrameSplitter()
        self.status: int | None = None
        self.error_body = b""
        self.accepted_at: float | None = None  # response head received
        self.offset_at: float | None = None
        self.offset_cursor: int | None = None
        self.resumed: bool | None = None
        self.last_cursor = 0
        self.received = 0  # change events, all steps
        self.counts: dict[str, int] = {}  # change events of the current step, per organization
        self.stale = 0  # change events of another step
        self.foreign = 0  # change events of an organization the user is not a member of
        self.out_of_order = 0  # cursor not above the previous one
        self.close_reason: str | None = None  # from an `event: close` / `must-refetch`
        self.ended = False
        self.head_event: asyncio.Event | None = None
        self.connect_error: str | None = None
        self.retry_after: str | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but quack like one.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.transport = None
        if self.status is None:
            self.connect_error = self.connect_error or ("reset" if exc else "closed before the response")
            self._head_done()

    def data_received(self, data: bytes) -> None:
        if self.status is None:
            self._head += data
            end = self._head.find(HEAD_END)
            if end < 0:
                return
            head = parse_head(self._head[:end])
            self.retry_after = head.headers.get("retry-after")
            data = self._head[end + 4 :]
            self._head = b""
            self.status = head.status
            self.accepted_at = self.clock()
            if head.chunked:
                self._dechunker = Dechunker()
            self._head_done()
            if head.status != 200:
                self.error_body = data
                if self.transport is not None:
                    self.transport.close()
                return
        if self.status != 200:
            self.error_body += data
            return
        if self._dechunker is not None:
            data = self._dechunker.feed(data)
        for frame in self._frames.feed(data):
            self._frame(frame)

    # -- frames -----------------------------------------------------------------------------------

    def _frame(self, frame: bytes) -> None:
        event, event_id, data = frame_fields(frame)
        if event == b"change" and event_id is not None and data is not None:
            self._change(int(event_id), data)
        elif event == b"offset" and event_id is not None and data is not None:
            self._offset(int(event_id), data)
        elif event in (b"close", b"must-refetch") and data is not None:
            reason = _OFFSET.decode(data).get("reason")
            self.close_reason = f"{event.decode()}:{reason}"

    def _change(self, cursor: int, data: bytes) -> None:
        now = self.clock()
        session = self.session
        if cursor <= self.last_cursor:
            self.out_of_order += 1
        else:
            self.last_cursor = cursor
        self.received += 1
        change = _CHANGE.decode(data)
        org = change.organization_id
        if org not in self.orgs:
            self.foreign += 1
        bench = change.data
        if bench is None or bench.s != session.step:
            self.stale += 1
            return
        counts = self.counts
        counts[org] = counts.get(org, 0) + 1
        session.histogram.add((now - bench.t) * 1000.0)
        if not session.first_rx:
            session.first_rx = now
        session.last_rx = now

    def _offset(self, cursor: int, data: bytes) -> None:
        if self.offset_at is not None:
            return
        self.offset_at = self.clock()
        self.offset_cursor = cursor
        self.resumed = bool(_OFFSET.decode(data).get("resumed"))
        self.last_cursor = max(self.last_cursor, cursor)
        self.session.offsets += 1
        if self.session.on_change is not None:
            self.session.on_change()

    def _head_done(self) -> None:
        if self.head_event is not None:
            self.head_event.set()

    # -- checks -----------------------------------------------------------------------------------

    def begin(self) -> None:
        self.counts = {}

    def shortfall(self, published: dict[str, int]) -> tuple[int, int]:
        """(missing, extra) events of the current step, against what was published in the user's orgs."""
        missing = extra = 0
        counts = self.counts
        for org in self.orgs:
            expected = published.get(org, 0)
            got = counts.get(org, 0)
            if got < expected:
                missing += expected - got
            elif got > expected:
                extra += got - expected
        return missing, extra

    def reset_for_reconnect(self, request: bytes) -> None:
        """Forget the old response; keep the last cursor (sent as ``Last-Event-ID`` by the caller)."""
        self.request = request
        self.transport = None
        self._head = b""
        self._dechunker = None
        self._frames = FrameSplitter()
        self.status = None
        self.error_body = b""
        self.accepted_at = None
        self.offset_at = None
        self.offset_cursor = None
        self.resumed = None
        self.close_reason = None
        self.ended = False
        self.connect_error = None
