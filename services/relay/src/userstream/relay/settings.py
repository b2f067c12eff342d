"""Settings of the relay: flags over ``USERSTREAM_*`` variables over defaults."""

from __future__ import annotations

from dataclasses import dataclass

from userstream.events.validation import Limits
from userstream.policy import Policy
from userstream.settings import (
    Env,
    LoggingSettings,
    LogStreamSettings,
    NatsSettings,
    PolicySettings,
    SettingsError,
    limits_from_env,
)

DEFAULT_PORT = 8001


@dataclass(frozen=True)
class RelayTiming:
    """How often the relay looks, how much it takes, how it waits after a failure."""

    # Seconds between two looks at an empty outbox (commit → log latency is about half of it).
    poll_interval: float = 0.05
    # Rows read, validated and published together (one PostgreSQL read, one pipelined publish). Per-batch
    # round trips bound the rate: draining a backlog, 5,000 gave about 1.6 times the rows/s of 1,000.
    batch_size: int = 5000
    # Seconds between a standby's attempts to take the advisory lock (takeover within 15 s needs < 15).
    standby_interval: float = 1.0
    # Backoff after PostgreSQL or NATS failed: starts here, doubles, stops growing at the maximum.
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    # Seconds beyond the in-flight batch's publish attempt that a recovery still looks at the log:
    # a bound on clock skew between this host and NATS, and on messages still in flight when it died.
    recovery_margin: float = 30.0

    @classmethod
    def from_env(cls, env: Env) -> RelayTiming:
        timing = cls(
            poll_interval=env.number("RELAY_POLL_INTERVAL", cls.poll_interval, minimum=0.001),
            batch_size=env.integer("RELAY_BATCH_SIZE", cls.batch_size, minimum=1, maximum=10000),
            standby_interval=env.number("RELAY_STANDBY_INTERVAL", cls.standby_interval, minimum=0.05),
            backoff_initial=env.number("RELAY_BACKOFF_INITIAL", cls.backoff_initial, minimum=0.001),
            backoff_max=env.number("RELAY_BACKOFF_MAX", cls.backoff_max, minimum=0.001),
            recovery_margin=env.number("RELAY_RECOVERY_MARGIN", cls.recovery_margin, minimum=0.0),
        )
        if timing.standby_interval >= 15.0:
            raise SettingsError("USERSTREAM_RELAY_STANDBY_INTERVAL must be below 15 (the takeover promise)")
        return timing


@dataclass(frozen=True)
class RelaySettings:
    host: str
    port: int
    dsn: str
    nats: NatsSettings
    stream: LogStreamSettings
    policy: Policy
    limits: Limits
    timing: RelayTiming
    logging: LoggingSettings

    @classmethod
    def load(
        cls,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        dsn: str | None = None,
        nats_url: str | None = None,
        env: Env | None = None,
    ) -> RelaySettings:
        env = env or Env()
        dsn = dsn or env.optional_text("OUTBOX_DSN")
        if not dsn:
            raise SettingsError("USERSTREAM_OUTBOX_DSN (or --dsn) is required: the database holding the outbox")
        return cls(
            host=host,
            port=port,
            dsn=dsn,
            nats=NatsSettings.from_env(env, nats_url),
            stream=LogStreamSettings.from_env(env),
            policy=PolicySettings.from_env(env).policy,
            limits=limits_from_env(env),
            timing=RelayTiming.from_env(env),
            logging=LoggingSettings.from_env(env),
        )
