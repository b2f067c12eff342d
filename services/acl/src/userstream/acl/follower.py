"""Keeps this replica's membership projection caught up with the log, and says how far it is.

The follower reads ``user.*`` and ``tombstone.*.*`` of the ``ACTIVITY`` stream
with an ordered consumer (see ``_feed``) and applies each membership event in
order with the one shared rule (``userstream.memberships``), and each
organization's deletion at its position (its lane-0 tombstone is stored right
after it, ``userstream.eventlog.deletions``). ``position`` is the highest log
position the projection is known to reflect: the last event applied, or the
head confirmed by the last barrier, whichever is higher.

Synchronisation (at start and after every NATS reconnect): check that the log
still holds everything after ``position`` (else refuse: events may have been
purged unseen), resubscribe after the last applied event, and run a barrier.
Until that completes the follower is not ``synced`` and the service does not
serve.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from enum import Enum

import nats.errors
import structlog
from nats.aio.msg import Msg

from userstream.acl._feed import OrderedFeed
from userstream.acl._probe import LeaderProbe
from userstream.acl._waiters import SequenceWaiters
from userstream.acl.settings import AclTuning
from userstream.acl_state.log_events import NotAMembershipEventError, decode_membership_event
from userstream.acl_state.projection import MembershipProjection
from userstream.coalesce import Coalescer
from userstream.cursor import LogBounds
from userstream.errors import UnavailableError
from userstream.eventlog.deletions import LANES, TOMBSTONES
from userstream.eventlog.log import EventLog
from userstream.eventlog.subjects import TOMBSTONE_PREFIX, USER_PREFIX, organization_of_tombstone
from userstream.nats_connection import NatsConnection

log = structlog.get_logger("userstream.acl")

MEMBERSHIP_SUBJECTS = USER_PREFIX + "*"
FOLLOWED_SUBJECTS = (MEMBERSHIP_SUBJECTS, TOMBSTONES)
_SYNC_RETRY_WAIT = 0.5


class SyncState(Enum):
    SYNCING = "syncing"  # catching up; not serving
    SYNCED = "synced"  # caught up and following
    REFUSED = "refused"  # the log lost events this replica never saw; not serving until an operator acts


class RetentionGapError(Exception):
    """The log's first retained event is after the position the projection reflects."""


StateListener = Callable[[SyncState], None]


class MembershipFollower:
    def __init__(
        self,
        connection: NatsConnection,
        log_: EventLog,
        projection: MembershipProjection,
        tuning: AclTuning,
    ) -> None:
        self._connection = connection
        self._log = log_
        self._probe = LeaderProbe(connection, log_.stream)
        self._tuning = tuning
        self.projection = projection
        self.confirmed = 0
        self.state = SyncState.SYNCING
        self._listeners: list[StateListener] = []
        self._applied = SequenceWaiters()
        self._applied.reset(projection.applied)
        self._feed = OrderedFeed(
            connection,
            log_.stream,
            FOLLOWED_SUBJECTS,
            self._on_event,
            heartbeat=tuning.consumer_heartbeat,
            inactive_threshold=tuning.consumer_inactive_threshold,
        )
        # At most one barrier round in flight; callers arriving meanwhile share the next one.
        self._barrier = Coalescer(self._paced_barrier_round)
        self._last_round = float("-inf")
        self._syncing: asyncio.Task[None] | None = None
        self.refusal: str | None = None

    @property
    def position(self) -> int:
        """Every membership event at or before this position is applied."""
        return max(self.projection.applied, self.confirmed)

    @property
    def synced(self) -> bool:
        return self.state is SyncState.SYNCED

    def on_state_change(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    def load(self, projection: MembershipProjection, position: int) -> None:
        """Start from a snapshot: ``projection`` reflects every membership event up to ``position``."""
        self.projection = projection
        self.confirmed = position
        self._applied.reset(projection.applied)

    async def start(self) -> None:
        """Synchronise now (returns once synced or refused); resynchronise after every reconnect."""
        self._connection.on_state_change(self._on_connection_change)
        # Tracked like every later sync, so a reconnect meanwhile does not start a second one.
        self._syncing = asyncio.get_running_loop().create_task(self._sync())
        await asyncio.shield(self._syncing)

    async def stop(self) -> None:
        if self._syncing is not None:
            self._syncing.cancel()
        await self._feed.stop()

    async def wait_applied(self, sequence: int) -> None:
        """Return once the event at ``sequence`` (and everything before it) is applied."""
        try:
            await self._applied.wait(sequence, self._tuning.apply_timeout)
        except TimeoutError:
            raise UnavailableError(
                f"this acl replica has not applied position {sequence} within {self._tuning.apply_timeout} s"
            ) from None

    async def confirm(self) -> LogBounds:
        """A barrier: the log's bounds as of after this call, with every membership event up to the head applied.

        Coalesced (see ``userstream.coalesce``) and paced: rounds start at least
        ``barrier_interval`` apart, so a reconnect storm of GetSubject("now")
        costs a few NATS requests per interval, not one per call.
        """
        return await self._barrier.get()

    async def _paced_barrier_round(self) -> LogBounds:
        loop = asyncio.get_running_loop()
        delay = self._last_round + self._tuning.barrier_interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        self._last_round = loop.time()
        return await self._barrier_round()

    async def _barrier_round(self) -> LogBounds:
        """Read the head L, then the last followed event S (after L: it covers every one up to L); await S."""
        bounds = await self._probe.bounds()
        last_followed = await asyncio.gather(*(self._probe.last_sequence(subject) for subject in FOLLOWED_SUBJECTS))
        await self.wait_applied(max(last_followed))
        if bounds.log_id != self.projection.log_id:
            raise UnavailableError("the log was recreated; this acl replica is resynchronising")
        self.confirmed = max(self.confirmed, bounds.last_sequence)
        return bounds

    async def _on_event(self, sequence: int, msg: Msg) -> None:
        projection = self.projection
        if msg.subject.startswith(TOMBSTONE_PREFIX):
            organization_id, lane = organization_of_tombstone(msg.subject)
            if lane == LANES[0]:
                # Stored in one atomic batch right after its organization.deleted, at sequence - 1.
                projection.delete_organization(sequence, organization_id, sequence - 1)
                log.info("acl.organization_deleted", organization_id=organization_id, position=sequence - 1)
            else:
                projection.advance(sequence)
            self._applied.advance(sequence)
            return
        try:
            event = decode_membership_event(msg.subject, msg.data)
        except NotAMembershipEventError as exc:
            log.warning("acl.event_skipped", sequence=sequence, subject=msg.subject, reason=str(exc))
            projection.advance(sequence)
        else:
            projection.apply(sequence, event.user_id, event.action, event.organization_id, event.role)
        self._applied.advance(sequence)

    async def _sync(self) -> None:
        self._set_state(SyncState.SYNCING)
        while True:
            gap = None
            try:
                await self._sync_once()
            except RetentionGapError as exc:
                gap = str(exc)
            except (UnavailableError, nats.errors.Error, TimeoutError) as exc:
                log.warning("acl.sync_failed", error=str(exc) or repr(exc), retry_in=_SYNC_RETRY_WAIT)
                if not self._connection.connected:
                    return  # the reconnect resynchronises
                await asyncio.sleep(_SYNC_RETRY_WAIT)
                continue
            if gap is not None:
                await self._refuse(gap)
            else:
                self._set_state(SyncState.SYNCED)
                log.info("acl.synced", position=self.position, users=len(self.projection))
            return

    async def _refuse(self, problem: str) -> None:
        self.refusal = problem
        log.error("acl.retention_gap", problem=problem, action=_operator_action(self._tuning.snapshot_stream))
        await self._feed.stop()
        self._set_state(SyncState.REFUSED)

    async def _sync_once(self) -> None:
        bounds = await self._log.bounds()
        projection = self.projection
        if bounds.log_id != projection.log_id:
            self._adopt_log(bounds)
        position = self.position
        if bounds.first_sequence > position + 1:
            if not self._tuning.accept_retention_gap:
                raise RetentionGapError(
                    f"the log starts at sequence {bounds.first_sequence} but this replica's state reflects "
                    f"position {position}: membership events in between may have been purged unseen"
                )
            log.warning("acl.retention_gap_accepted", first_sequence=bounds.first_sequence, position=position)
            projection.advance(bounds.first_sequence - 1)
            projection.floor = bounds.first_sequence - 1
            self._applied.advance(projection.applied)
        await self._feed.start(projection.applied)
        await self._barrier_round()

    def _adopt_log(self, bounds: LogBounds) -> None:
        """The stream is not the one the projection was built from: start over for this log."""
        if self.projection.log_id != 0:
            log.warning("acl.log_recreated", old_log_id=self.projection.log_id, log_id=bounds.log_id)
        self.projection.reset(bounds.log_id)
        self.confirmed = 0
        self._applied.reset(0)

    def _on_connection_change(self, connected: bool) -> None:
        if not connected:
            if self.state is SyncState.SYNCED:
                self._set_state(SyncState.SYNCING)
            return
        if self.state is SyncState.REFUSED:
            return
        if self._syncing is None or self._syncing.done():
            self._syncing = asyncio.get_running_loop().create_task(self._sync())

    def _set_state(self, state: SyncState) -> None:
        if state is self.state:
            return
        self.state = state
        for listener in self._listeners:
            listener(state)


def _operator_action(snapshot_stream: str) -> str:
    return (
        "this acl replica refuses to serve because its memberships could be wrong. Either make a snapshot "
        f"(stream {snapshot_stream}) written by a replica that followed the log past the purged events available "
        "and restart, or, if no membership event was purged (or losing them is acceptable), restart with "
        "`userstream acl --accept-retention-gap` and re-grant any missing memberships"
    )
