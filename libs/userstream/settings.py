"""Settings shared by the services, read once from ``USERSTREAM_*`` variables.

Each service composes these sections into its own frozen settings object
(``userstream.<service>.settings``), adding its flags; every timeout and limit
has its default here or there, nowhere else.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from userstream.events.validation import DEFAULT_MAX_DATA_BYTES, MAX_DATA_BYTES_CEILING, Limits
from userstream.policy import Policy, load_policy

PREFIX = "USERSTREAM_"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
# A shorter shared secret can be guessed; the same bar as the edge's USERSTREAM_JWT_SECRET.
MIN_GRPC_TOKEN_BYTES = 32


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


class Env:
    """Typed access to ``USERSTREAM_*`` variables with the variable named in every error."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def text(self, name: str, default: str) -> str:
        value = self._environ.get(PREFIX + name, "").strip()
        return value or default

    def optional_text(self, name: str) -> str | None:
        value = self._environ.get(PREFIX + name, "").strip()
        return value or None

    def integer(self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
        raw = self._environ.get(PREFIX + name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{PREFIX}{name}={raw!r} is not an integer") from None
        if minimum is not None and value < minimum:
            raise SettingsError(f"{PREFIX}{name}={value} must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise SettingsError(f"{PREFIX}{name}={value} must be at most {maximum}")
        return value

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        raw = self._environ.get(PREFIX + name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{PREFIX}{name}={raw!r} is not a number") from None
        if not value >= minimum:  # also rejects NaN
            raise SettingsError(f"{PREFIX}{name}={raw} must be at least {minimum}")
        if not math.isfinite(value):
            raise SettingsError(f"{PREFIX}{name}={raw} must be a finite number")
        return value

    def standard(self, name: str) -> str:
        """A variable outside the ``USERSTREAM_`` prefix, named by a standard (``OTEL_*``), stripped."""
        return self._environ.get(name, "").strip()

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default).lower()
        if value not in choices:
            raise SettingsError(f"{PREFIX}{name}={value!r} must be one of {', '.join(choices)}")
        return value


@dataclass(frozen=True)
class NatsSettings:
    """Where NATS is and how long to wait for it."""

    servers: tuple[str, ...] = (DEFAULT_NATS_URL,)
    connect_timeout: float = 2.0
    # JetStream API calls and publish acknowledgements; a dependency that does not
    # answer within it is reported as unavailable (CONTRACT §3 asks for < 5 s).
    request_timeout: float = 3.0
    # Waits between reconnect attempts; nats-py retries forever (-1).
    reconnect_wait: float = 0.5

    @classmethod
    def from_env(cls, env: Env, url: str | None = None) -> NatsSettings:
        raw = url or env.text("NATS_URL", DEFAULT_NATS_URL)
        servers = tuple(server.strip() for server in raw.split(",") if server.strip())
        if not servers:
            raise SettingsError(f"{PREFIX}NATS_URL is empty")
        return cls(
            servers=servers,
            connect_timeout=env.number("NATS_CONNECT_TIMEOUT", cls.connect_timeout, minimum=0.1),
            request_timeout=env.number("NATS_REQUEST_TIMEOUT", cls.request_timeout, minimum=0.1),
        )


@dataclass(frozen=True)
class LogStreamSettings:
    """The ``ACTIVITY`` stream: the durable, ordered log (its owner, activity, applies them)."""

    name: str = "ACTIVITY"
    retention_age: float = 604800.0  # seconds; 7 days
    retention_max_msgs: int = -1  # -1: unlimited
    duplicate_window: float = 120.0  # seconds an idempotency key is remembered
    replicas: int = 1  # 3 on a 3-node cluster; also used for the buckets

    @classmethod
    def from_env(cls, env: Env) -> LogStreamSettings:
        max_msgs = env.integer("RETENTION_MAX_MSGS", cls.retention_max_msgs, minimum=-1)
        return cls(
            name=env.text("STREAM_NAME", cls.name),
            retention_age=env.number("RETENTION_AGE", cls.retention_age, minimum=1.0),
            retention_max_msgs=-1 if max_msgs == 0 else max_msgs,
            duplicate_window=env.number("DUPLICATE_WINDOW", cls.duplicate_window, minimum=1.0),
            # JetStream allows 1 to 5 replicas.
            replicas=env.integer("STREAM_REPLICAS", cls.replicas, minimum=1, maximum=5),
        )


@dataclass(frozen=True)
class LoggingSettings:
    format: str = "json"  # "json" in production, "console" for people
    level: str = "info"

    @classmethod
    def from_env(cls, env: Env) -> LoggingSettings:
        return cls(
            format=env.choice("LOG_FORMAT", cls.format, ("json", "console")),
            level=env.choice("LOG_LEVEL", cls.level, ("debug", "info", "warning", "error")),
        )


@dataclass(frozen=True)
class GrpcServerSettings:
    """How a gRPC service listens and stops."""

    host: str = "127.0.0.1"
    port: int = 0
    # Seconds in-flight calls get to finish on SIGTERM.
    shutdown_grace: float = 5.0
    # Clients reconnect (and so rebalance over replicas) after this many seconds.
    max_connection_age: float = 300.0
    # The bearer token every call must carry (rpc/auth.py); None: calls are not authenticated.
    token: str | None = None
    # Port of the service's Prometheus endpoint (GET /metrics, on `host`); None: no metrics, no per-call cost.
    metrics_port: int | None = None

    @classmethod
    def from_env(cls, env: Env, host: str, port: int) -> GrpcServerSettings:
        metrics_port = env.optional_text("METRICS_PORT")
        return cls(
            host=host,
            port=port,
            shutdown_grace=env.number("SHUTDOWN_GRACE", cls.shutdown_grace),
            max_connection_age=env.number("GRPC_MAX_CONNECTION_AGE", cls.max_connection_age, minimum=1.0),
            token=grpc_token(env),
            metrics_port=env.integer("METRICS_PORT", 0, minimum=0, maximum=65535) if metrics_port else None,
        )


def grpc_token(env: Env) -> str | None:
    """``USERSTREAM_GRPC_TOKEN``: the internal plane's bearer token, for its servers and clients alike."""
    token = env.optional_text("GRPC_TOKEN")
    if token is not None and len(token.encode()) < MIN_GRPC_TOKEN_BYTES:
        raise SettingsError(
            f"{PREFIX}GRPC_TOKEN is {len(token.encode())} bytes; at least {MIN_GRPC_TOKEN_BYTES} are required, "
            "e.g. $(openssl rand -hex 32)"
        )
    return token


@dataclass(frozen=True)
class PolicySettings:
    path: Path | None = None
    policy: Policy = field(default_factory=lambda: load_policy(None))

    @classmethod
    def from_env(cls, env: Env) -> PolicySettings:
        raw = env.optional_text("POLICY")
        path = Path(raw) if raw else None
        return cls(path=path, policy=load_policy(path))


def limits_from_env(env: Env) -> Limits:
    """The size limits on an activity (``USERSTREAM_MAX_DATA_BYTES``): one reading for every door an activity
    enters by (gRPC, acl's mutations, the outbox relay), so a row passes one exactly when it passes another."""
    return Limits(
        max_data_bytes=env.integer("MAX_DATA_BYTES", DEFAULT_MAX_DATA_BYTES, minimum=1, maximum=MAX_DATA_BYTES_CEILING)
    )
