"""The edge worker's parts and the connect flow: NATS, the log, acl, channels, open streams, drain."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from userstream.acl_state.subject import CursorRefusedError, Subject
from userstream.coalesce import Coalescer
from userstream.cursor import Cursor, LogBounds, Position, parse_cursor
from userstream.edge import sse
from userstream.edge._log_identity import LogIdentityWatch
from userstream.edge.acl_batcher import SubjectBatcher
from userstream.edge.auth import EdgeAuth
from userstream.edge.connection import Connection
from userstream.edge.errors import UnavailableHTTPError
from userstream.edge.expiry import ExpiryWheel
from userstream.edge.fanout_trace import FanoutTracer
from userstream.edge.hub import Hub
from userstream.edge.registry import StreamRegistry
from userstream.edge.settings import EdgeSettings
from userstream.errors import FailedPreconditionError, UnavailableError, UserstreamError
from userstream.eventlog.log import EventLog
from userstream.eventlog.reader import LogReader
from userstream.eventlog.subjects import ORG_PREFIX, org_subject, user_subject
from userstream.nats_connection import NatsConnection
from userstream.permissions import SYSTEM_USER
from userstream.rpc.acl import AclClient
from userstream.rpc.channel import is_serving
from userstream.tokens import Principal
from userstream.tracing import start_tracing

log = structlog.get_logger("userstream.edge")

PUBLIC_SUBJECT = ORG_PREFIX + "*"
MAX_LIFETIME = "max-lifetime"  # the close reason of an anonymous stream at the end of its lifetime


@dataclass(frozen=True, slots=True)
class Opened:
    """The outcome of a connect: a live stream, or the reason the client must refetch."""

    connection: Connection | None = None
    refetch_reason: str | None = None


class EdgeRuntime:
    """Everything one edge worker holds. Built in the app's lifespan, handed to handlers by DI."""

    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self.nats = NatsConnection(settings.nats, name="userstream-edge")
        self.log = EventLog(self.nats, settings.stream, owner=False)
        self.reader = LogReader(self.nats, settings.stream.name)
        self.tracing = start_tracing("userstream-edge", settings.tracing)
        self.acl = AclClient(
            settings.acl_addr, timeout=settings.acl_timeout, token=settings.grpc_token, tracing=self.tracing
        )
        self.registry = StreamRegistry(
            settings.max_streams_per_user,
            settings.max_streams_per_worker,
            settings.retry_after,
            max_anonymous=settings.max_anonymous_streams_per_worker,
        )
        self.hub = Hub(
            connection=self.nats,
            reader=self.reader,
            codec=lambda: self.log.codec,
            ring_size=settings.channel_ring_size,
            on_forget=self._forget,
            unavailable_after=settings.nats.request_timeout * 2,
            catchup_page_events=settings.catchup_page_events,
        )
        if self.tracing is not None:
            self.hub.tracer = FanoutTracer(self.tracing)
        # Seconds acl took for a connect's GetSubject; set by the metrics (None: not measured).
        self.observe_acl: Callable[[float], None] | None = None
        self._bounds = Coalescer(self.log.bounds)
        self._identity = LogIdentityWatch(self.nats, self.log, self._log_recreated)
        self._expiry = ExpiryWheel()
        # Anonymous streams end after their lifetime and come back through the caps (their `retry:` as set).
        self._lifetimes = ExpiryWheel(MAX_LIFETIME, retry_ms=settings.retry_ms)
        self.auth = EdgeAuth(settings.auth, cors_origins=settings.cors_origins, retry_after=settings.retry_after)
        self._subjects = SubjectBatcher(self.acl)
        self.draining = False
        self.acl_reachable = False
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start in the background: the worker answers /healthz at once and /readyz when NATS and acl are up."""
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._open_log()),
            loop.create_task(self._ping_forever()),
            loop.create_task(self._expiry.run()),
            loop.create_task(self._lifetimes.run()),
            loop.create_task(self._watch_acl()),
            loop.create_task(self.auth.run()),
        ]
        if self.hub.tracer is not None:
            self._tasks.append(loop.create_task(self.hub.tracer.run()))

    @property
    def ready(self) -> bool:
        return self.log.ready and self.acl_reachable and not self.draining

    async def drain(self) -> None:
        """End every stream with `close` (shutdown) and a jittered `retry:`; wait for them within the window."""
        if self.draining:
            return
        self.draining = True
        count = len(self.registry.connections)
        log.info("edge.draining", streams=count, window=self.settings.drain_timeout)
        base = self.settings.retry_ms
        for connection in list(self.registry.connections):
            jittered = random.randint(base, base + self.settings.shutdown_retry_spread_ms)  # noqa: S311  # not security
            connection.close("shutdown", retry_ms=jittered)
        try:
            await asyncio.wait_for(self.registry.writers_finished(), self.settings.drain_timeout)
        except TimeoutError:
            log.warning("edge.drain_timeout", unfinished=self.registry.writers)
            # Clients that stopped reading cannot take their `close`: drop their sockets now, so the
            # process exits at the end of the window rather than when uvicorn cancels their writers.
            self.registry.abort_all()
        log.info("edge.drained", streams=count)

    async def stop(self) -> None:
        await self.drain()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.hub.close()
        await self.auth.close()
        await self.acl.close()
        await self.log.close()
        await self.nats.close()
        if self.tracing is not None:
            if self.hub.tracer is not None:
                self.hub.tracer.flush()
            # Off the loop: the exporter's final flush is a blocking HTTP request.
            await asyncio.to_thread(self.tracing.shutdown)

    # -- connect ------------------------------------------------------------------------------------

    async def open_stream(self, principal: Principal | None, requested: Cursor | None) -> Opened:
        """Open a user's stream (``principal``) or the public one (None), from ``requested`` or the head."""
        if self.draining:
            raise UnavailableHTTPError("this edge is shutting down; reconnect", self.settings.retry_after)
        if not self.log.ready:
            raise UnavailableHTTPError("the log (NATS) is not reachable", self.settings.retry_after)
        user_id = principal.user_id if principal is not None else None
        self.registry.reserve(user_id)
        try:
            opened = await self._open(principal, requested)
        except BaseException:
            self.registry.unreserve(user_id)
            raise
        if opened.connection is None:
            self.registry.unreserve(user_id)
            if opened.refetch_reason is not None:
                refetches = self.hub.stats.must_refetch
                refetches[opened.refetch_reason] = refetches.get(opened.refetch_reason, 0) + 1
        return opened

    async def _open(self, principal: Principal | None, requested: Cursor | None) -> Opened:
        bounds: LogBounds | None = None
        if requested is not None or principal is None:
            bounds = await self._read_bounds()
        if requested is not None:
            assert bounds is not None
            position = bounds.locate(requested)
            if position is not Position.VALID:
                return Opened(refetch_reason=position.value)
            requested = Cursor(bounds.log_id, requested.sequence)
            if principal is None and bounds.last_sequence - requested.sequence > self.settings.public_resume_horizon:
                # Anyone may ask; reading that far back is not worth it for a stream anyone can reload.
                return Opened(refetch_reason=Position.EXPIRED.value)
        if principal is None:
            assert bounds is not None
            start = requested.sequence if requested else bounds.last_sequence
            connection = self._connection(
                None, SYSTEM_USER, {}, start=start, target=bounds.last_sequence, resumed=requested is not None
            )
            subjects = [PUBLIC_SUBJECT]
            lifetime = self.settings.anonymous_stream_lifetime
            # Spread over the last tenth, so streams opened together do not all come back together.
            self._lifetimes.add(connection, time.time() + lifetime - random.uniform(0, lifetime / 10))  # noqa: S311
        else:
            subject = await self._snapshot(principal.user_id, requested)
            if isinstance(subject, Opened):
                return subject  # told to refetch
            start = requested.sequence if requested else parse_cursor(subject.cursor).sequence
            target = bounds.last_sequence if bounds is not None else start
            connection = self._connection(
                principal.user_id,
                subject.system_role,
                dict(subject.memberships),
                start=start,
                target=target,
                resumed=requested is not None,
            )
            subjects = [user_subject(principal.user_id), *(org_subject(org) for org in subject.memberships)]
            if math.isfinite(principal.expires_at):  # a session hook's `expires_at: null` never expires
                self._expiry.add(connection, principal.expires_at)
        self.registry.add(connection)
        for name in subjects:
            self.hub.join(connection, name, after=start)
        connection.release()  # the connect hold: from here the joins alone hold it
        log.info("stream.open", connection=connection.id, user=connection.user_id, resumed=connection.resumed)
        return Opened(connection=connection)

    async def _snapshot(self, user_id: str, requested: Cursor | None) -> Subject | Opened:
        """The user's subject from acl as of ``requested`` (or now), or the refetch acl asks for."""
        asked = time.perf_counter()
        try:
            return await self._subjects.get_subject(user_id, str(requested) if requested else "now")
        except CursorRefusedError as refused:
            return Opened(refetch_reason=refused.reason)
        except FailedPreconditionError:
            return Opened(refetch_reason=Position.EXPIRED.value)
        except UserstreamError as exc:
            # The details (gRPC status, acl's address) are for the log, not for whoever asked.
            log.warning("acl.snapshot_failed", user=user_id, error=str(exc))
            raise UnavailableHTTPError("acl did not answer", self.settings.retry_after) from exc
        finally:
            if self.observe_acl is not None:
                self.observe_acl(time.perf_counter() - asked)

    def _connection(
        self,
        user_id: str | None,
        system_role: str,
        memberships: dict[str, str],
        *,
        start: int,
        target: int,
        resumed: bool,
    ) -> Connection:
        return Connection(
            hub=self.hub,
            policy=self.settings.policy,
            user_id=user_id,
            system_role=system_role,
            memberships=memberships,
            position=start,
            offset_target=target,
            offset_cursor=self.log.codec.encode(start),
            resumed=resumed,
            max_bytes=self.settings.queue_max_bytes,
        )

    async def _read_bounds(self) -> LogBounds:
        try:
            return await self._bounds.get()
        except UnavailableError as exc:
            log.warning("edge.log_bounds_failed", error=str(exc))
            raise UnavailableHTTPError("the log is not reachable", self.settings.retry_after) from exc

    def _forget(self, connection: Connection) -> None:
        self._expiry.discard(connection)
        self._lifetimes.discard(connection)
        self.registry.remove(connection)
        if connection.cut_off:
            self.hub.stats.slow_consumers += 1
            log.warning("stream.slow_consumer", connection=connection.id, user=connection.user_id)
            loop = asyncio.get_running_loop()
            loop.call_later(self.settings.cutoff_grace, self.registry.abort_if_writing, connection)
        log.info("stream.close", connection=connection.id, user=connection.user_id, reason=connection.close_reason)

    # -- background work ---------------------------------------------------------------------------

    async def _open_log(self) -> None:
        await self.nats.connect()
        await self.log.open()
        await self._identity.start()
        await self.hub.watch_leader_changes(self.log.stream)
        self.hub.open_user_feed()

    def _log_recreated(self, old_log_id: int, log_id: int) -> None:
        """Every open stream holds cursors of the old log: end them; on reconnect they are told to refetch."""
        log.warning("edge.log_recreated", old_log_id=old_log_id, log_id=log_id, streams=len(self.registry.connections))
        for connection in list(self.registry.connections):
            connection.close("log-recreated")

    async def _ping_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.ping_interval)
            for connection in list(self.registry.connections):
                if connection.offset_sent:
                    connection.write(sse.PING)

    async def _watch_acl(self) -> None:
        while True:
            reachable = await is_serving(self.acl.channel)
            if reachable != self.acl_reachable:
                log.info("edge.acl_reachable" if reachable else "edge.acl_unreachable", address=self.settings.acl_addr)
            self.acl_reachable = reachable
            await asyncio.sleep(self.settings.acl_health_interval)
