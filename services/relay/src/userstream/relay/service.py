"""Runs the relay: its NATS connection and log, the relay loop, and the HTTP probes.

Reads ``RelaySettings``: ``USERSTREAM_OUTBOX_DSN``, ``USERSTREAM_NATS_URL``,
the ``USERSTREAM_RELAY_*`` timings, the policy and data limits (shared with
the activity service, so that a row is valid here exactly when it is there).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator

import structlog
import uvicorn

from userstream.eventlog.log import EventLog
from userstream.nats_connection import NatsConnection
from userstream.relay.metrics import RelayMetrics
from userstream.relay.probes import create_app
from userstream.relay.relay import Relay
from userstream.relay.settings import RelaySettings

log = structlog.get_logger("userstream.relay")


class _ProbeServer(uvicorn.Server):
    """uvicorn inside our loop: the process's own signal handlers stop it, not uvicorn's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class RelayService:
    """Start: listen (probes) → connect NATS and open the log → run the relay. Stop in reverse."""

    def __init__(self, settings: RelaySettings) -> None:
        self.settings = settings
        self.connection = NatsConnection(settings.nats, name="userstream-relay")
        self.log = EventLog(self.connection, settings.stream, owner=False)
        self.metrics = RelayMetrics()
        self.relay = Relay(settings, self.connection, self.log, self.metrics)
        config = uvicorn.Config(
            create_app(self.relay, self.metrics),
            host=settings.host,
            port=settings.port,
            lifespan="off",
            access_log=False,
            log_config=None,
        )
        self._server = _ProbeServer(config)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def port(self) -> int:
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    async def start(self) -> int:
        serving = asyncio.get_running_loop().create_task(self._server.serve())
        self._tasks.append(serving)
        while not self._server.started:
            if serving.done():
                # uvicorn logs why it could not listen and exits; report it as the OSError it was.
                with contextlib.suppress(SystemExit):
                    serving.result()
                raise OSError(f"cannot listen on {self.settings.host}:{self.settings.port}")
            await asyncio.sleep(0.01)
        self._tasks.append(asyncio.get_running_loop().create_task(self._run()))
        log.info("relay.listening", host=self.settings.host, port=self.port)
        return self.port

    async def stop(self) -> None:
        self._server.should_exit = True
        for task in reversed(self._tasks):
            if not task.done() and task is not self._tasks[0]:
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.log.close()
        await self.connection.close()
        log.info("relay.stopped")

    async def _run(self) -> None:
        await self.connection.connect()
        await self.log.open()
        await self.relay.run()
