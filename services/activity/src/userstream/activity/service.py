"""Runs the activity service: gRPC server, NATS connection, the log, health."""

from __future__ import annotations

import asyncio

import structlog

from userstream.activity.servicer import SERVICE_NAME, ActivityServicer
from userstream.activity.settings import ActivitySettings
from userstream.eventlog.log import EventLog
from userstream.nats_connection import NatsConnection
from userstream.proto.activity.v1 import activity_pb2_grpc as pb_grpc
from userstream.rpc.server import GrpcServer
from userstream.tracing import start_tracing

log = structlog.get_logger("userstream.activity")


class ActivityService:
    """The service's parts and their order of start and stop.

    Start: listen (health NOT_SERVING) → connect NATS → provision the stream →
    SERVING. Stop: NOT_SERVING → finish in-flight calls → drain NATS.
    """

    def __init__(self, settings: ActivitySettings) -> None:
        self.settings = settings
        self.connection = NatsConnection(settings.nats, name="userstream-activity")
        self.log = EventLog(self.connection, settings.stream, owner=True)
        self.tracing = start_tracing("userstream-activity", settings.tracing)
        self.server = GrpcServer(settings.server, [SERVICE_NAME], tracing=self.tracing, nats=self.connection)
        self.server.add(
            pb_grpc.add_ActivityServiceServicer_to_server,
            ActivityServicer(
                self.log, settings.policy, settings.limits, settings.max_batch, traced=self.tracing is not None
            ),
        )
        self._health_updates: set[asyncio.Task[None]] = set()
        self._opening: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> int:
        """Listen now; become SERVING once NATS and the stream are ready (in the background)."""
        port = await self.server.start()
        self.log.on_readiness_change(self._on_readiness_change)
        self._opening = asyncio.get_running_loop().create_task(self._open())
        return port

    async def wait_ready(self) -> None:
        if self._opening is not None:
            await self._opening

    async def stop(self) -> None:
        if self._opening is not None:
            self._opening.cancel()
        await self.server.stop()
        await self.log.close()
        await self.connection.close()
        if self.tracing is not None:
            # Off the loop: the exporter's final flush is a blocking HTTP request.
            await asyncio.to_thread(self.tracing.shutdown)
        log.info("activity.stopped")

    async def _open(self) -> None:
        await self.connection.connect()
        await self.log.open()

    def _on_readiness_change(self, ready: bool) -> None:
        task = asyncio.get_running_loop().create_task(self.server.set_serving(serving=ready))
        self._health_updates.add(task)
        task.add_done_callback(self._health_updates.discard)
