"""The log as a service holds it: connection-aware, provisioned, with its recorder and bounds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import nats.errors
import nats.js.errors
import structlog

from userstream.cursor import Cursor, CursorCodec, LogBounds
from userstream.errors import UnavailableError
from userstream.eventlog.deletions import WRITE_LANES, DeletedOrganizations
from userstream.eventlog.recorder import Recorder
from userstream.eventlog.stream import log_id_of, provision_stream
from userstream.nats_connection import NatsConnection
from userstream.settings import LogStreamSettings

log = structlog.get_logger("userstream.eventlog")

ReadinessListener = Callable[[bool], None]
_RETRY_WAIT = 0.5


class EventLog:
    """Opens the ``ACTIVITY`` stream whenever NATS (re)connects.

    The owner (the activity service) creates or updates the stream; other
    services wait until it exists. ``lanes``: the tombstone lanes its writes are conditional on
    (``userstream.eventlog.deletions``). ``ready`` is true while NATS is connected and
    the stream is known; listeners hear every change (health checks use it).
    """

    def __init__(
        self,
        connection: NatsConnection,
        settings: LogStreamSettings,
        *,
        owner: bool,
        lanes: tuple[int, ...] = WRITE_LANES,
    ) -> None:
        self._connection = connection
        self._lanes = lanes
        self._settings = settings
        self._owner = owner
        self._timeout = connection.request_timeout
        self._codec: CursorCodec | None = None
        self._recorder: Recorder | None = None
        self.deleted = DeletedOrganizations()
        self._ready = False
        self._listeners: list[ReadinessListener] = []
        self._opening: asyncio.Task[None] | None = None
        connection.on_state_change(self._on_connection_change)

    @property
    def stream(self) -> str:
        return self._settings.name

    @property
    def ready(self) -> bool:
        return self._ready and self._connection.connected

    @property
    def codec(self) -> CursorCodec:
        if self._codec is None:
            raise UnavailableError("the log is not open yet")
        return self._codec

    def on_readiness_change(self, listener: ReadinessListener) -> None:
        self._listeners.append(listener)

    def recorder(self) -> Recorder:
        if not self.ready or self._recorder is None:
            raise UnavailableError("the log is not available: NATS is not connected")
        return self._recorder

    async def open(self) -> None:
        """Open the stream now (retrying until it exists); later reconnects reopen it in the background."""
        while True:
            try:
                await self._open_once()
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("log.open_failed", stream=self.stream, error=repr(exc), retry_in=_RETRY_WAIT)
                await asyncio.sleep(_RETRY_WAIT)
            else:
                return

    async def bounds(self) -> LogBounds:
        """The log's identity and retained range, from the stream leader."""
        try:
            info = await self._connection.manager.stream_info(self.stream)
        except (nats.errors.Error, TimeoutError) as exc:
            raise UnavailableError(f"cannot read the log's state: {type(exc).__name__}") from exc
        return LogBounds(log_id_of(info), info.state.first_seq, info.state.last_seq)

    async def head(self) -> Cursor:
        return (await self.bounds()).head

    async def close(self) -> None:
        if self._opening is not None:
            self._opening.cancel()
        self._set_ready(ready=False)
        await self.deleted.close()

    async def _open_once(self) -> None:
        manager = self._connection.manager
        if self._owner:
            info = await provision_stream(manager, self._settings)
        else:
            try:
                info = await manager.stream_info(self.stream)
            except nats.js.errors.NotFoundError:
                raise nats.errors.Error(f"stream {self.stream} does not exist yet") from None
        log_id = log_id_of(info)
        if self._codec is not None and self._codec.log_id != log_id:
            log.warning("log.recreated", stream=self.stream, old_log_id=self._codec.log_id, log_id=log_id)
            self.deleted.forget()  # another log: its tombstones, not the old one's
        await self.deleted.refresh(self._connection.client, manager, self.stream)
        self._codec = CursorCodec(log_id)
        if self._recorder is None:
            self._recorder = Recorder(
                self._connection,
                self.stream,
                self._codec,
                self._timeout,
                deleted=self.deleted,
                # Replicated: conditional writes of one organization are serialised by JetStream.
                serialized=self._settings.replicas > 1,
                lanes=self._lanes,
            )
        else:
            self._recorder = self._recorder.for_log(self._codec)
        self._set_ready(ready=True)
        log.info("log.open", stream=self.stream, log_id=log_id, last_sequence=info.state.last_seq)

    def _on_connection_change(self, connected: bool) -> None:
        if not connected:
            self._set_ready(ready=False)
            return
        if self._codec is None:
            return  # the first open is driven by open()
        if self._opening is None or self._opening.done():
            self._opening = asyncio.get_running_loop().create_task(self.open())

    def _set_ready(self, *, ready: bool) -> None:
        if ready == self._ready:
            return
        self._ready = ready
        for listener in self._listeners:
            listener(self.ready)
