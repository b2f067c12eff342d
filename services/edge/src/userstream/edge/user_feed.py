"""The user feed: every connection's own ``user.<id>`` subject through one subscription per worker.

A channel per user would cost each connect a NATS subscribe, a flush round
trip and a log request, and each idle stream a subscription and a channel of
its own. Membership events are rare next to product events, so the worker
follows ``live.user.*`` once, for as long as it runs, and hands each event to
the connections of the user it concerns. A connection joining behind the
feed (a resume from before the worker started) reads its own subject's gap
from the log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from userstream.edge.channels import Channel
from userstream.edge.connection import Connection
from userstream.edge.events import LiveEvent
from userstream.eventlog.subjects import USER_PREFIX, user_subject

if TYPE_CHECKING:
    from userstream.edge.hub import Hub

USER_FEED = USER_PREFIX + "*"


class UserFeed(Channel):
    persistent = True

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub, USER_FEED, covered_from=0)
        self._by_subject: dict[str, set[Connection]] = {}

    def start(self) -> None:
        self.hub.spawn(self._run(self._open))

    async def _open(self) -> None:
        """Follow from the current end of ``user.*``: nothing before it is needed by the feed itself."""
        await self._subscribe()
        if not self.last:
            self.covered_from = self.ring_floor = await self.hub.reader.last_sequence(USER_FEED)

    def _joined_subject(self, connection: Connection) -> str:
        assert connection.user_id is not None
        return user_subject(connection.user_id)

    def _add(self, connection: Connection) -> None:
        super()._add(connection)
        self._by_subject.setdefault(self._joined_subject(connection), set()).add(connection)

    def remove(self, connection: Connection) -> None:
        super().remove(connection)
        if connection.user_id is None:
            return
        subject = user_subject(connection.user_id)
        members = self._by_subject.get(subject)
        if members is not None:
            members.discard(connection)
            if not members:
                del self._by_subject[subject]

    def _ring_events(self, subject: str, after: int) -> list[LiveEvent]:
        return [event for event in self.ring if event.sequence > after and event.subject == subject]

    def _offer(self, event: LiveEvent, live: bool) -> None:
        members = self._by_subject.get(event.subject)
        if members:
            for member in tuple(members):
                member.offer(event, live)
