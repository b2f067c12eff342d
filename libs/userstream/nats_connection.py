"""One NATS connection per process, with reconnect handling and a state others can watch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from urllib.parse import ParseResult, urlparse

import nats
import nats.errors
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.manager import JetStreamManager

from userstream.settings import NatsSettings

log = structlog.get_logger("userstream.nats")

StateListener = Callable[[bool], None]
_ERROR_LOG_INTERVAL = 5.0
_MAX_CONNECT_BACKOFF = 5.0


class NatsConnection:
    """Connects (retrying until it succeeds), reconnects forever, and reports each change of state.

    Listeners are called with True on (re)connect and False on disconnect; health
    checks and gap repair hang off them.
    """

    def __init__(self, settings: NatsSettings, name: str) -> None:
        self._settings = settings
        self._name = name
        self._client: Client | None = None
        self._listeners: list[StateListener] = []
        self._errors_suppressed = 0
        self._last_error_log = 0.0
        # Times the client reconnected after losing its server (for the services' metrics).
        self.reconnects = 0

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("NATS is not connected yet")
        return self._client

    @property
    def jetstream(self) -> JetStreamContext:
        return self.client.jetstream(timeout=self._settings.request_timeout)

    @property
    def manager(self) -> JetStreamManager:
        return self.client.jsm(timeout=self._settings.request_timeout)

    @property
    def request_timeout(self) -> float:
        return self._settings.request_timeout

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    def on_state_change(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    async def connect(self) -> Client:
        """Connect, retrying with backoff until NATS answers (cancel to give up)."""
        backoff = 0.1
        while True:
            try:
                self._client = await nats.connect(
                    servers=list(self._settings.servers),
                    name=self._name,
                    connect_timeout=self._settings.connect_timeout,
                    reconnect_time_wait=self._settings.reconnect_wait,
                    max_reconnect_attempts=-1,
                    ping_interval=5,
                    max_outstanding_pings=3,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
            except (nats.errors.NoServersError, OSError, TimeoutError) as exc:
                servers = [_without_credentials(server) for server in self._settings.servers]
                log.warning("nats.connect_failed", servers=servers, error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_CONNECT_BACKOFF)
                continue
            log.info("nats.connected", server=_address(self._client.connected_url))
            self._notify(connected=True)
            return self._client

    async def close(self) -> None:
        """Flush what is pending and close; safe to call when never connected."""
        client, self._client = self._client, None
        if client is None or client.is_closed:
            return
        try:
            await asyncio.wait_for(client.drain(), timeout=self._settings.request_timeout)
        except (TimeoutError, nats.errors.Error):
            await client.close()

    def _notify(self, *, connected: bool) -> None:
        for listener in self._listeners:
            listener(connected)

    async def _on_disconnected(self) -> None:
        log.warning("nats.disconnected")
        self._notify(connected=False)

    async def _on_reconnected(self) -> None:
        client = self._client
        log.info("nats.reconnected", server=_address(client.connected_url if client is not None else None))
        self.reconnects += 1
        self._notify(connected=True)

    async def _on_error(self, error: Exception) -> None:
        # nats-py calls this once per dropped message during an outage: log a summary at most every few seconds.
        now = time.monotonic()
        if now - self._last_error_log < _ERROR_LOG_INTERVAL:
            self._errors_suppressed += 1
            return
        log.warning("nats.error", error=repr(error), suppressed=self._errors_suppressed)
        self._errors_suppressed = 0
        self._last_error_log = now


def _address(url: ParseResult | None) -> str:
    """``host:port`` of a server URL, never its user and password (USERSTREAM_NATS_URL may carry them)."""
    if url is None:
        return ""
    return f"{url.hostname}:{url.port}" if url.port else str(url.hostname or "")


def _without_credentials(server: str) -> str:
    parsed = urlparse(server if "://" in server else "nats://" + server)
    return f"{parsed.scheme}://{_address(parsed)}"
