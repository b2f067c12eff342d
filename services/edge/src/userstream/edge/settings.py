"""Settings of the edge: flags over ``USERSTREAM_*`` variables over defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from userstream.auth.keys import UnusableKeyError, VerificationKey, load_public_key, secret_key
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
class AuthSettings:
    """How the edge knows who is asking (CONTRACT §6); at least one key source is required."""

    # HS256 secrets: the one that signs now, and the one it replaced (both verify during a rotation).
    secret: str | None = None
    previous_secret: str | None = None
    # PEM public keys: RSA (RS256), EC P-256 (ES256), Ed25519 (EdDSA).
    public_keys: tuple[Path, ...] = ()
    jwks_url: str | None = None
    # Seconds between fetches of the key set (± 10 % jitter).
    jwks_refresh: float = 300.0
    # Seconds at least between two fetches caused by an unknown `kid`.
    jwks_min_refetch: float = 30.0
    # Seconds a fetch of the key set may take.
    jwks_timeout: float = 5.0
    issuer: str | None = None
    audience: str | None = None
    # Tokens remembered as verified (a reconnect storm presents the same ones again).
    token_cache_entries: int = 50_000
    # The application's session endpoint, for requests without a token.
    hook_url: str | None = None
    # Seconds a request waits for the hook, queueing for a free call included.
    hook_timeout: float = 2.0
    # Hook calls in flight at once per worker; more wait (within hook_timeout) for a free one.
    hook_concurrency: int = 64
    # Seconds the hook's 200 for the same headers is reused (never past its expires_at); 0: not reused.
    hook_cache_ttl: float = 5.0

    @classmethod
    def from_env(cls, env: Env, secret: str | None = None) -> AuthSettings:
        paths = tuple(Path(p.strip()) for p in env.text("JWT_PUBLIC_KEYS", "").split(",") if p.strip())
        settings = cls(
            secret=secret or env.optional_text("JWT_SECRET"),
            previous_secret=env.optional_text("JWT_PREVIOUS_SECRET"),
            public_keys=paths,
            jwks_url=_http_url(env, "JWKS_URL"),
            jwks_refresh=env.number("JWKS_REFRESH", cls.jwks_refresh, minimum=1.0),
            jwks_min_refetch=env.number("JWKS_MIN_REFETCH", cls.jwks_min_refetch),
            jwks_timeout=env.number("JWKS_TIMEOUT", cls.jwks_timeout, minimum=0.1),
            issuer=env.optional_text("JWT_ISSUER"),
            audience=env.optional_text("JWT_AUDIENCE"),
            token_cache_entries=env.integer("TOKEN_CACHE_ENTRIES", cls.token_cache_entries, minimum=1),
            hook_url=_http_url(env, "AUTH_HOOK_URL"),
            hook_timeout=env.number("AUTH_HOOK_TIMEOUT", cls.hook_timeout, minimum=0.01),
            hook_concurrency=env.integer("AUTH_HOOK_CONCURRENCY", cls.hook_concurrency, minimum=1),
            hook_cache_ttl=env.number("AUTH_HOOK_CACHE_TTL", cls.hook_cache_ttl),
        )
        if not (settings.secret or settings.public_keys or settings.jwks_url):
            raise SettingsError(
                "no key to verify stream tokens: set USERSTREAM_JWT_SECRET (HS256), "
                "USERSTREAM_JWT_PUBLIC_KEYS (PEM files) or USERSTREAM_JWKS_URL"
            )
        if settings.previous_secret and not settings.secret:
            raise SettingsError("USERSTREAM_JWT_PREVIOUS_SECRET is set without USERSTREAM_JWT_SECRET")
        for variable, value in (("JWT_SECRET", settings.secret), ("JWT_PREVIOUS_SECRET", settings.previous_secret)):
            if value is not None and len(value.encode()) < MIN_JWT_SECRET_BYTES:
                raise SettingsError(
                    f"USERSTREAM_{variable} is {len(value.encode())} bytes; at least {MIN_JWT_SECRET_BYTES} are "
                    "required (a shorter HS256 secret can be guessed from one token), e.g. $(openssl rand -hex 32)"
                )
        settings.static_keys()  # a PEM file that cannot be used stops the start, naming the file
        return settings

    def static_keys(self) -> list[VerificationKey]:
        """The secrets and PEM public keys, each bound to its algorithm; SettingsError naming a bad file."""
        keys = [secret_key(self.secret, "USERSTREAM_JWT_SECRET")] if self.secret else []
        if self.previous_secret:
            keys.append(secret_key(self.previous_secret, "USERSTREAM_JWT_PREVIOUS_SECRET"))
        for path in self.public_keys:
            try:
                keys.append(load_public_key(path))
            except UnusableKeyError as error:
                raise SettingsError(f"USERSTREAM_JWT_PUBLIC_KEYS: {error}") from None
        return keys


def _http_url(env: Env, name: str) -> str | None:
    url = env.optional_text(name)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SettingsError(f"USERSTREAM_{name}={url!r} must be an http:// or https:// URL")
    return url


@dataclass(frozen=True)
class EdgeSettings:
    host: str
    port: int
    workers: int
    auth: AuthSettings
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
            auth=AuthSettings.from_env(env, jwt_secret),
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
