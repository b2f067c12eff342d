"""A connection's catch-up on one subject: the part of the log it missed, read a page at a time.

A resume (``Last-Event-ID``) or a new membership needs the events of a subject
between the connection's position and what its channel has seen live. Read at
once, a resume over a long retention would hold every event in memory and
decode them in one loop that never yields (issue 19). Instead a catch-up reads
one page (at most ``catchup_page_events`` events, ``queue_max_bytes / 4``
bytes), offers it, and reads the next one only when the connection's writer
has taken what it could deliver (``Connection.room_for``): its memory is a
page, its pace the client's, and every page is an await, so other streams on
the worker keep flowing.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from userstream.edge.events import decode_event

if TYPE_CHECKING:
    from userstream.edge.connection import Connection
    from userstream.edge.hub import Hub


class CatchUp:
    """Where one paged read stands: every event of its subject up to ``frontier`` has been offered."""

    __slots__ = ("_wanted", "frontier")

    def __init__(self, after: int) -> None:
        self.frontier = after
        self._wanted = asyncio.Event()

    def wake(self) -> None:
        self._wanted.set()

    async def wait_for_room(self, connection: Connection) -> None:
        while not connection.room_for(self):
            self._wanted.clear()
            await self._wanted.wait()


async def catch_up(hub: Hub, connection: Connection, subject: str, after: int, until: int) -> None:
    """Offer ``connection`` every event of ``subject`` in ``(after, until]``, a page at a time.

    The caller holds ``connection`` (its join); the hold is handed over to the
    catch-up's frontier here and released. If the log cannot be read the
    connection is closed (``unavailable``: the client resumes later) and
    UnavailableError propagates.
    """
    catchup = CatchUp(after)
    connection.begin_catchup(catchup)
    connection.release()
    try:
        reader = hub.reader
        page_events = hub.catchup_page_events
        page_bytes = max(1, connection.max_bytes // 4)
        public_only = connection.public
        while catchup.frontier < until:
            await catchup.wait_for_room(connection)
            if connection.closed:
                return
            hub.stats.catchup_reads += 1
            page = await reader.read_page(subject, catchup.frontier, until, page_events, page_bytes)
            codec = hub.codec
            for message in page:
                if public_only and not message.public:
                    continue  # never on the public stream: not worth decoding
                event = decode_event(message, codec)
                if event is not None:
                    connection.offer(event, False)
            connection.caught_up(catchup, page[-1].sequence if page else until)
    except BaseException:
        # Close before the frontier goes: ending the catch-up would release what other channels hold past
        # the events it never read, and the client would resume after them (tests/reliability/test_found_bugs).
        connection.close("unavailable")
        raise
    finally:
        connection.end_catchup(catchup)
