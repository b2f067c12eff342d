"""Runs the acl service: gRPC server, NATS, the membership follower, system roles, snapshots, health."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats.errors
import structlog

from userstream.acl.follower import MembershipFollower, SyncState
from userstream.acl.maintenance import Maintenance
from userstream.acl.mutations import MembershipMutations
from userstream.acl.queries import SubjectQueries
from userstream.acl.readiness import Readiness
from userstream.acl.servicer import SERVICE_NAME, AclServicer
from userstream.acl.settings import AclSettings
from userstream.acl.snapshots import SnapshotStore
from userstream.acl.system_roles import SystemRoles
from userstream.acl_state import MembershipProjection, Snapshot, SnapshotError
from userstream.errors import UnavailableError
from userstream.eventlog.deletions import ACL_LANE
from userstream.eventlog.log import EventLog
from userstream.eventlog.reader import LogReader
from userstream.nats_connection import NatsConnection
from userstream.proto.acl.v1 import acl_pb2_grpc as pb_grpc
from userstream.rpc.server import GrpcServer
from userstream.tracing import start_tracing

log = structlog.get_logger("userstream.acl")

_RETRY_WAIT = 0.5
T = TypeVar("T")


class AclService:
    """The service's parts and their order of start and stop.

    Start: listen (health NOT_SERVING) → connect NATS → open the log → load the
    newest snapshot → load system roles → catch up with the log → SERVING.
    Serving stops while NATS is disconnected or the replica is catching up.
    Stop: NOT_SERVING → finish in-flight calls → last snapshot → drain NATS.
    """

    def __init__(self, settings: AclSettings) -> None:
        self.settings = settings
        tuning = settings.tuning
        replicas = settings.stream.replicas
        self.connection = NatsConnection(settings.nats, name="userstream-acl")
        # acl's membership changes have a tombstone lane of their own: they never wait for activity's writes.
        self.log = EventLog(self.connection, settings.stream, owner=False, lanes=(ACL_LANE,))
        reader = LogReader(self.connection, settings.stream.name)
        self.follower = MembershipFollower(self.connection, self.log, MembershipProjection(0), tuning)
        self.roles = SystemRoles(self.connection, tuning, replicas)
        self.snapshots = SnapshotStore(self.connection, tuning, replicas)
        self.readiness = Readiness(self.connection, self.follower, self.roles)
        self.maintenance = Maintenance(self.follower, self.snapshots, tuning.snapshot_interval)
        queries = SubjectQueries(
            log=self.log,
            follower=self.follower,
            roles=self.roles,
            readiness=self.readiness,
            policy=settings.policy,
            max_items=tuning.check_access_max_items,
        )
        mutations = MembershipMutations(
            log_=self.log,
            follower=self.follower,
            reader=reader,
            readiness=self.readiness,
            policy=settings.policy,
            limits=settings.limits,
            attempts=tuning.mutation_attempts,
        )
        self.tracing = start_tracing("userstream-acl", settings.tracing)
        self.server = GrpcServer(settings.server, [SERVICE_NAME], tracing=self.tracing, nats=self.connection)
        self.server.add(
            pb_grpc.add_AclServiceServicer_to_server, AclServicer(queries, mutations, self.roles, self.readiness)
        )
        self._opening: asyncio.Task[None] | None = None
        self._roles_resuming: asyncio.Task[None] | None = None
        self._health_changed = asyncio.Event()
        self._health_task: asyncio.Task[None] | None = None
        self._started = False

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> int:
        """Listen now; become SERVING once caught up with the log (in the background)."""
        port = await self.server.start()
        self._health_task = asyncio.get_running_loop().create_task(self._publish_health())
        self._opening = asyncio.get_running_loop().create_task(self._open())
        return port

    async def wait_ready(self) -> None:
        """Wait until the start-up sequence has finished (serving, or refusing after a retention gap)."""
        if self._opening is not None:
            await self._opening

    async def stop(self) -> None:
        for task in (self._opening, self._roles_resuming):
            if task is not None:
                task.cancel()
        await self.server.stop()
        if self._started:
            await self.maintenance.stop(self.settings.nats.request_timeout)
        await self.follower.stop()
        await self.roles.close()
        await self.log.close()
        await self.connection.close()
        if self._health_task is not None:
            self._health_task.cancel()
        if self.tracing is not None:
            # Off the loop: the exporter's final flush is a blocking HTTP request.
            await asyncio.to_thread(self.tracing.shutdown)
        log.info("acl.stopped")

    async def _open(self) -> None:
        await self.connection.connect()
        self.connection.on_state_change(self._on_connection_change)
        self.follower.on_state_change(self._on_follower_change)
        await self.log.open()
        await _retrying(self.snapshots.open)
        snapshot = await self._load_snapshot()
        if snapshot is not None:
            self.follower.load(snapshot.projection, snapshot.position)
        await _retrying(self.roles.open)
        await self.follower.start()
        self._health_changed.set()
        if self.follower.state is SyncState.SYNCED:
            self.maintenance.start()
            self._started = True

    async def _load_snapshot(self) -> Snapshot | None:
        problem = None
        try:
            snapshot = await _retrying(self.snapshots.load)
        except SnapshotError as exc:
            snapshot, problem = None, str(exc)
        if problem is not None:
            log.error("acl.snapshot_unreadable", error=problem, action="starting from the log alone")
            return None
        if snapshot is None:
            log.info("acl.no_snapshot")
        else:
            log.info("acl.snapshot_loaded", position=snapshot.position, users=len(snapshot.projection))
        return snapshot

    def _on_connection_change(self, connected: bool) -> None:
        self._health_changed.set()
        resuming = self._roles_resuming is not None and not self._roles_resuming.done()
        if connected and self.roles.loaded and not resuming:
            self._roles_resuming = asyncio.get_running_loop().create_task(_retrying(self.roles.resume))

    def _on_follower_change(self, _: SyncState) -> None:
        self._health_changed.set()

    async def _publish_health(self) -> None:
        # One writer, latest state wins: listeners only flag that something changed.
        while True:
            await self._health_changed.wait()
            self._health_changed.clear()
            await self.server.set_serving(serving=self.readiness.ready)


async def _retrying(operation: Callable[[], Awaitable[T]]) -> T:
    """Run ``operation`` until it does not fail for want of NATS (cancel to give up)."""
    while True:
        try:
            return await operation()
        except (UnavailableError, nats.errors.Error, TimeoutError) as exc:
            log.warning("acl.retrying", operation=getattr(operation, "__qualname__", "?"), error=repr(exc))
            await asyncio.sleep(_RETRY_WAIT)
