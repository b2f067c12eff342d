"""The relay's loop: stand by for the lock, recover, then move committed rows into the log.

Order (CONTRACT §7.2). Rows are read in ``(xid, id)`` order: the inserting
transaction's id, then insertion order. A transaction that committed before
another began got its xid first (xids are handed out in time order, at the
first write), so it sorts first; the rows of one transaction become visible
together and sort together. A batch that ends inside a transaction is
continued with that transaction's remaining rows before anything else, so an
older transaction committing meanwhile cannot land between them.

Exactly once (CONTRACT §7.1). Before publishing a batch the relay notes it in
``relay_state`` (ids, message ids, subjects, the log's sequence before it);
after JetStream acknowledged it, one transaction deletes the rows and clears
the note. A relay that finds a note — it crashed, or NATS failed mid-batch —
reads the log back for those message ids (``recovery.py``) and deletes what is
there before publishing anything; the rest is published again under the same
``Nats-Msg-Id``, which JetStream also deduplicates within its window.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

import psycopg
import structlog

from userstream.errors import InvalidArgumentError, UnavailableError, UserstreamError
from userstream.eventlog.log import EventLog
from userstream.eventlog.subjects import subject_of
from userstream.events.model import Activity
from userstream.events.validation import validate_activity
from userstream.nats_connection import NatsConnection
from userstream.outbox.rows import OutboxRow, row_message_id
from userstream.relay.metrics import RelayMetrics
from userstream.relay.recovery import recorded_message_ids
from userstream.relay.settings import RelaySettings
from userstream.relay.store import Inflight, OutboxSession, SchemaMissingError

log = structlog.get_logger("userstream.relay")


@dataclass(frozen=True, slots=True)
class _Batch:
    """Rows read together, validated: each valid one with its activity, each refused one with why."""

    rows: Sequence[OutboxRow]
    valid: list[tuple[OutboxRow, Activity]]
    rejected: list[tuple[int, str]]


class Role:
    STARTING = "starting"
    STANDBY = "standby"
    ACTIVE = "active"


class _Backoff:
    def __init__(self, initial: float, maximum: float) -> None:
        self._initial = initial
        self._maximum = maximum
        self._next = initial

    def reset(self) -> None:
        self._next = self._initial

    async def wait(self) -> None:
        delay = self._next
        self._next = min(self._next * 2, self._maximum)
        await asyncio.sleep(delay)


class Relay:
    """One relay process's loop. ``run()`` until cancelled; ``role`` and ``postgres_ready`` for probes."""

    def __init__(
        self, settings: RelaySettings, connection: NatsConnection, log_: EventLog, metrics: RelayMetrics
    ) -> None:
        self._settings = settings
        self._timing = settings.timing
        self._nats = connection
        self._log = log_
        self._metrics = metrics
        self._session: OutboxSession | None = None
        self.role = Role.STARTING
        self._condition = ""
        self._backoff = _Backoff(self._timing.backoff_initial, self._timing.backoff_max)
        self._after_sequence = 0
        self._continuing_xid: int | None = None
        self._outbox_id = ""

    @property
    def postgres_ready(self) -> bool:
        return self._session is not None and self._session.connected

    @property
    def nats_ready(self) -> bool:
        return self._log.ready

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self._session_lifetime()
                except psycopg.Error as error:
                    self._note("postgres_unavailable", error=_describe(error))
                except SchemaMissingError as error:
                    self._note("schema_missing", error=str(error))
                except UnavailableError as error:
                    self._note("nats_unavailable", error=str(error))
                except Exception:
                    # A bug must not leave a process that looks alive and relays nothing: drop the session
                    # (and the lock, so a standby can take over), say why, and start again.
                    log.exception("relay.failed")
                    self._condition = "failed"
                await self._backoff.wait()
        finally:
            await self._close_session()

    async def _session_lifetime(self) -> None:
        """Connect, take the lock, relay: returns or raises when the session is lost."""
        await self._close_session()
        self._session = session = await OutboxSession.connect(self._settings.dsn, self._nats.request_timeout)
        try:
            self._outbox_id = (await session.state()).outbox_id
            self._note("standby")
            self._set_role(Role.STANDBY)
            # A standby asks again every interval: the lock frees the moment the active relay's session ends.
            while not (self._log.ready and await session.try_lock()):  # noqa: ASYNC110  # polling PostgreSQL
                await asyncio.sleep(self._timing.standby_interval)
            self._set_role(Role.ACTIVE)
            self._note("active")
            self._backoff.reset()
            await self._relay(session)
        finally:
            self._set_role(Role.STANDBY)
            await self._close_session()

    async def _relay(self, session: OutboxSession) -> None:
        # Every message recorded from now on has a sequence above the head as it is now.
        self._after_sequence = (await self._log.bounds()).last_sequence
        state = await session.state()
        self._continuing_xid = state.last_xid
        inflight = state.inflight
        batch: _Batch | None = None
        while True:
            if inflight is not None:
                await self._until_done(partial(self._recover, session, inflight))
                batch = None  # read again after a recovery: some rows are gone
            if batch is None:
                batch = self._prepare(await session.fetch(self._timing.batch_size, continuing_xid=self._continuing_xid))
            if not batch.rows:
                self._metrics.lag_seconds.set(0)
                self._continuing_xid = None
                batch = None
                await asyncio.sleep(self._timing.poll_interval)
                continue
            oldest = min(row.created_at for row in batch.rows)
            self._metrics.lag_seconds.set(max(0.0, (datetime.now(UTC) - oldest).total_seconds()))
            self._metrics.batch_rows.observe(len(batch.rows))
            inflight, batch = await self._relay_batch(session, batch)

    def _prepare(self, rows: Sequence[OutboxRow]) -> _Batch:
        valid, rejected = self._validate(rows)
        return _Batch(rows, valid, rejected)

    async def _relay_batch(self, session: OutboxSession, batch: _Batch) -> tuple[Inflight | None, _Batch | None]:
        """Note, publish, finish. Returns the note left behind when publishing failed, and the next batch.

        While JetStream acknowledges this batch, the next one is read (without this batch's rows, which
        are deleted only once acknowledged) and validated: the relay's PostgreSQL and CPU work overlaps
        its wait for NATS.
        """
        rows, valid, rejected = batch.rows, batch.valid, batch.rejected
        last_xid = rows[-1].xid
        inflight = None
        if valid:
            inflight = Inflight(tuple(row.id for row, _ in valid), self._after_sequence, datetime.now(UTC))
        await session.begin_batch(inflight, rejected)
        self._metrics.rows_rejected.inc(len(rejected))
        if not valid:
            await session.finish_batch([], [], last_xid)
            self._continuing_xid = last_xid
            return None, None
        publishing = asyncio.get_running_loop().create_task(self._publish([activity for _, activity in valid]))
        try:
            # Read as if this batch were done: its transaction's remaining rows first, then the rest.
            upcoming = await session.fetch(
                self._timing.batch_size, continuing_xid=last_xid, excluding=[row.id for row in rows]
            )
            following = self._prepare(upcoming)
        except BaseException:
            publishing.cancel()
            with contextlib.suppress(asyncio.CancelledError, UserstreamError):
                await publishing
            raise
        try:
            outcomes = await publishing
        except UnavailableError as error:
            self._note("nats_unavailable", error=str(error))
            await self._backoff.wait()
            return inflight, None
        recorded = [row.id for (row, _), outcome in zip(valid, outcomes, strict=True) if isinstance(outcome, int)]
        refused = [
            (row.id, str(outcome))
            for (row, _), outcome in zip(valid, outcomes, strict=True)
            if isinstance(outcome, UserstreamError)
        ]
        await session.finish_batch(recorded, refused, last_xid)
        # The batch may have stopped inside a transaction: its remaining rows come before any other.
        self._continuing_xid = last_xid
        sequences = [outcome for outcome in outcomes if isinstance(outcome, int)]
        if sequences:
            self._after_sequence = max(self._after_sequence, *sequences)
        self._metrics.rows_recorded.inc(len(recorded))
        self._metrics.rows_rejected.inc(len(refused))
        self._note("active")
        self._backoff.reset()
        return None, following

    def _validate(self, rows: Sequence[OutboxRow]) -> tuple[list[tuple[OutboxRow, Activity]], list[tuple[int, str]]]:
        """Each row as the activity it records (the activity service's own validation), or why it cannot."""
        valid: list[tuple[OutboxRow, Activity]] = []
        rejected: list[tuple[int, str]] = []
        for row in rows:
            # Without its own idempotency key, a row is recorded under its identity (CONTRACT §7.6).
            raw = row.activity_input(default_idempotency_key=row_message_id(self._outbox_id, row.id))
            try:
                activity = validate_activity(raw, self._settings.policy, self._settings.limits)
            except InvalidArgumentError as error:
                rejected.append((row.id, str(error)))
                continue
            valid.append((row, activity))
        return valid, rejected

    async def _publish(self, activities: list[Activity]) -> list[int | UserstreamError]:
        """Each activity's stream sequence, or the domain error that refused it (one by one, if any did)."""
        recorder = self._log.recorder()
        try:
            return [result.cursor.sequence for result in await recorder.record(activities)]
        except UnavailableError:
            raise
        except UserstreamError as refusal:
            if len(activities) == 1:
                return [refusal]
        # One row of the batch is refused (e.g. its organization was deleted): find it, record the others.
        outcomes: list[int | UserstreamError] = []
        for activity in activities:
            try:
                (result,) = await recorder.record([activity])
            except UnavailableError:
                raise
            except UserstreamError as refusal:
                outcomes.append(refusal)
            else:
                outcomes.append(result.cursor.sequence)
        return outcomes

    async def _recover(self, session: OutboxSession, inflight: Inflight) -> None:
        """Delete the rows of ``inflight`` the log holds; the others will be published again."""
        valid, _ = self._validate(await session.rows(inflight.ids))
        wanted = {activity.idempotency_key or "": subject_of(activity) for _, activity in valid}
        found = await recorded_message_ids(
            self._nats,
            self._settings.stream.name,
            wanted,
            after_sequence=inflight.after_sequence,
            not_after=inflight.attempted_at + timedelta(seconds=self._timing.recovery_margin),
        )
        recorded = [(row.id, row.xid) for row, activity in valid if activity.idempotency_key in found]
        last_xid = recorded[-1][1] if recorded else None
        await session.finish_batch([row_id for row_id, _ in recorded], [], last_xid)
        self._metrics.rows_recorded.inc(len(recorded))
        # The batch's transaction that was cut short continues first (or, if nothing was recorded,
        # the batch is read again from its start in the usual order).
        if last_xid is not None:
            self._continuing_xid = last_xid
        log.info("relay.recovered", in_flight=len(inflight.ids), already_recorded=len(recorded))

    async def _until_done(self, attempt: Callable[[], Awaitable[None]]) -> None:
        """Retry ``attempt`` while NATS is unavailable."""
        while True:
            try:
                await attempt()
            except UnavailableError as error:
                self._note("nats_unavailable", error=str(error))
                await self._backoff.wait()
            else:
                return

    async def _close_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(psycopg.Error):
                # Shielded: the relay stopping (a cancellation) must still close the connection.
                await asyncio.shield(session.close())

    def _set_role(self, role: str) -> None:
        self.role = role
        self._metrics.active.set(1 if role == Role.ACTIVE else 0)

    def _note(self, condition: str, **details: object) -> None:
        """One log line per change of condition, never one per retry."""
        if condition == self._condition:
            return
        self._condition = condition
        event = "relay." + condition
        if condition in ("postgres_unavailable", "nats_unavailable", "schema_missing"):
            log.warning(event, **details)
        else:
            log.info(event, **details)


def _describe(error: psycopg.Error) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"
