"""Settings of the edge: flags over ``USERSTREAM_*`` variables over defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from userstream.policy import Policy
from userstream.settings import (
    Env,
    LoggingSettings,
    LogStreamSettings,
    NatsSettings,
    PolicySettings,
    SettingsError,
    grpc_token,
)
from userstream.tracing import TracingSettings

DEFAULT_PORT = 8000
DEFAULT_ACL_ADDR = "127.0.0.1:50052"
# HS256 with a shorter secret can be brute-forced offline from one token (RFC 7518 §3.2 asks for 256 bits).
MIN_JWT_SECRET_BYTES = 32


@dataclass(frozen=True)
class DevToolsSettings:
    """The demo page and the dev-only API (``userstream.edge.devtools``), for ``userstream dev`` only.

    It mints tokens for any user, so it is deliberately not read from the
    environment or from any flag of ``userstream edge``: only the dev stack's
    own edge process (``userstream.dev.edge_process``, loopback only) sets it.
    """

    # Where the dev API records changes (the activity service, host:port).
    activity_addr: str
    # Seconds the tokens minted for the demo page are valid.
    token_ttl: float = 86400.0
    # The demo users and organizations `GET /dev/demo` lists for the demo page; None: none (`--no-demo`).
    demo: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class EdgeSettings:
    host: str
    port: int
    workers: int
    jwt_secret: str
    nats: NatsSettings
    stream: LogStreamSettings
    policy: Policy
    logging: LoggingSettings
    acl_addr: str = DEFAULT_ACL_ADDR
    # Seconds to wait for acl's answer at connect before answering 503.
    acl_timeout: float = 3.0
    # Seconds between keepalive pings on every stream.
    ping_interval: float = 15.0
    # Milliseconds a client waits before reconnecting (the `retry:` field).
    retry_ms: int = 3000
    # Bytes queued for one connection before it is cut off as a slow consumer.
    queue_max_bytes: int = 1_048_576
    # Seconds a cut-off connection gets to flush its `close` event before its socket is dropped.
    cutoff_grace: float = 5.0
    max_streams_per_user: int = 10
    max_streams_per_worker: int = 20_000
    # Seconds a SIGTERM gives open streams to receive `close` (shutdown) before the process exits.
    drain_timeout: float = 10.0
    # Recent events each channel keeps for connections that join slightly behind it.
    channel_ring_size: int = 512
    # Origins allowed to read streams from a browser (CORS, with credentials); empty: same origin only.
    cors_origins: tuple[str, ...] = ()
    # Seconds a Retry-After header asks clients to wait when the edge cannot serve them.
    retry_after: int = 2
    # Seconds between checks that acl answers (for /readyz).
    acl_health_interval: float = 2.0
    # Milliseconds of jitter added to `retry:` when SIGTERM ends the streams, so clients return spread out.
    shutdown_retry_spread_ms: int = 5000
    # Events of the log read per page of a catch-up (a resume, a new membership); a page is also at most
    # queue_max_bytes / 4 bytes, and the next one is read when the client has taken the last.
    catchup_page_events: int = 256
    # A public stream resuming more than this many events behind the head gets `must-refetch`
    # (cursor-expired): an anonymous client cannot make the edge read the whole retention.
    public_resume_horizon: int = 100_000
    # Anonymous (public) streams per worker; the other max_streams_per_worker slots stay for signed-in users.
    max_anonymous_streams_per_worker: int = 1000
    # Seconds an anonymous stream lasts (less up to a tenth, spread) before `close` (max-lifetime).
    anonymous_stream_lifetime: float = 3600.0
    # Seconds a client gets to send a request's headers once connected (or between requests); then closed.
    header_timeout: float = 10.0
    # Bytes of request line and headers accepted; more is answered 431 and the connection closed.
    max_header_bytes: int = 16_384
    # SO_SNDBUF of each accepted socket, in bytes (0: the kernel's autotuning, up to 4 MiB and more): a client
    # that stops reading is found out by the queue limit after this much, not after megabytes in the kernel;
    # as large as the queue limit, so a burst of big events does not cut off a client that keeps up.
    socket_send_buffer: int = 1_048_576
    # The internal plane's bearer token, sent with every call to acl (and activity, in dev); None: none.
    grpc_token: str | None = None
    # The dev-only API and demo page; None (always, outside `userstream dev`) leaves them unmounted.
    devtools: DevToolsSettings | None = None
    # OpenTelemetry (the standard OTEL_* variables); off unless an OTLP endpoint is set.
    tracing: TracingSettings = field(default_factory=TracingSettings)
    # Where workers share their metrics (PROMETHEUS_MULTIPROC_DIR; `userstream edge --workers N` sets it).
    # None: /metrics reports this worker alone.
    metrics_dir: str | None = None
    # Seconds between copies of a worker's metrics into the shared directory (several workers only).
    metrics_sync_interval: float = 1.0

    @classmethod
    def load(
        cls,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        workers: int = 1,
        nats_url: str | None = None,
        jwt_secret: str | None = None,
        env: Env | None = None,
    ) -> EdgeSettings:
        env = env or Env()
        secret = jwt_secret or env.optional_text("JWT_SECRET")
        if not secret:
            raise SettingsError("USERSTREAM_JWT_SECRET is required: the HS256 secret that signs stream tokens")
        if len(secret.encode()) < MIN_JWT_SECRET_BYTES:
            raise SettingsError(
                f"USERSTREAM_JWT_SECRET is {len(secret.encode())} bytes; at least {MIN_JWT_SECRET_BYTES} are required "
                "(a shorter HS256 secret can be guessed from one token), e.g. $(openssl rand -hex 32)"
            )
        origins = tuple(o.strip() for o in env.text("CORS_ORIGINS", "").split(",") if o.strip())
        if "*" in origins:
            raise SettingsError(
                "USERSTREAM_CORS_ORIGINS must list origins (https://app.example.com,...), not `*`: streams are "
                "read with credentials (the token cookie), and `*` would let every web site read its visitors' streams"
            )
        return cls(
            host=host,
            port=port,
            workers=workers,
            jwt_secret=secret,
            nats=NatsSettings.from_env(env, nats_url),
            stream=LogStreamSettings.from_env(env),
            policy=PolicySettings.from_env(env).policy,
            logging=LoggingSettings.from_env(env),
            acl_addr=env.text("ACL_ADDR", DEFAULT_ACL_ADDR),
            acl_timeout=env.number("ACL_TIMEOUT", cls.acl_timeout, minimum=0.1),
            ping_interval=env.number("PING_INTERVAL", cls.ping_interval, minimum=0.05),
            retry_ms=env.integer("RETRY_MS", cls.retry_ms, minimum=0),
            queue_max_bytes=env.integer("QUEUE_MAX_BYTES", cls.queue_max_bytes, minimum=1024),
            cutoff_grace=env.number("CUTOFF_GRACE", cls.cutoff_grace),
            max_streams_per_user=env.integer("MAX_STREAMS_PER_USER", cls.max_streams_per_user, minimum=1),
            max_streams_per_worker=env.integer("MAX_STREAMS_PER_WORKER", cls.max_streams_per_worker, minimum=1),
            drain_timeout=env.number("DRAIN_TIMEOUT", cls.drain_timeout),
            channel_ring_size=env.integer("CHANNEL_RING_SIZE", cls.channel_ring_size, minimum=0),
            cors_origins=origins,
            retry_after=env.integer("RETRY_AFTER", cls.retry_after, minimum=1),
            acl_health_interval=env.number("ACL_HEALTH_INTERVAL", cls.acl_health_interval, minimum=0.05),
            shutdown_retry_spread_ms=env.integer("SHUTDOWN_RETRY_SPREAD_MS", cls.shutdown_retry_spread_ms, minimum=0),
            catchup_page_events=env.integer("CATCHUP_PAGE_EVENTS", cls.catchup_page_events, minimum=1),
            public_resume_horizon=env.integer("PUBLIC_RESUME_HORIZON", cls.public_resume_horizon, minimum=0),
            max_anonymous_streams_per_worker=env.integer(
                "MAX_ANONYMOUS_STREAMS_PER_WORKER", cls.max_anonymous_streams_per_worker, minimum=0
            ),
            anonymous_stream_lifetime=env.number(
                "ANONYMOUS_STREAM_LIFETIME", cls.anonymous_stream_lifetime, minimum=1.0
            ),
            header_timeout=env.number("HEADER_TIMEOUT", cls.header_timeout, minimum=0.1),
            max_header_bytes=env.integer("MAX_HEADER_BYTES", cls.max_header_bytes, minimum=1024),
            socket_send_buffer=env.integer("SOCKET_SEND_BUFFER", cls.socket_send_buffer, minimum=0),
            grpc_token=grpc_token(env),
            tracing=TracingSettings.from_env(env),
            metrics_dir=env.standard("PROMETHEUS_MULTIPROC_DIR") or None,
            metrics_sync_interval=env.number("METRICS_SYNC_INTERVAL", cls.metrics_sync_interval, minimum=0.05),
        )
