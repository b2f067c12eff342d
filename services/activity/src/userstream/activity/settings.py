"""Settings of the activity service: flags over ``USERSTREAM_*`` variables over defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from userstream.events.validation import Limits
from userstream.policy import Policy
from userstream.settings import (
    Env,
    GrpcServerSettings,
    LoggingSettings,
    LogStreamSettings,
    NatsSettings,
    PolicySettings,
    limits_from_env,
)
from userstream.tracing import TracingSettings

DEFAULT_PORT = 50051
MAX_BATCH = 1000  # activities per RecordActivities call


@dataclass(frozen=True)
class ActivitySettings:
    server: GrpcServerSettings
    nats: NatsSettings
    stream: LogStreamSettings
    policy: Policy
    limits: Limits
    logging: LoggingSettings
    max_batch: int = MAX_BATCH
    # OpenTelemetry (the standard OTEL_* variables); off unless an OTLP endpoint is set.
    tracing: TracingSettings = field(default_factory=TracingSettings)

    @classmethod
    def load(
        cls, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT, nats_url: str | None = None, env: Env | None = None
    ) -> ActivitySettings:
        env = env or Env()
        return cls(
            server=GrpcServerSettings.from_env(env, host, port),
            nats=NatsSettings.from_env(env, nats_url),
            stream=LogStreamSettings.from_env(env),
            policy=PolicySettings.from_env(env).policy,
            limits=limits_from_env(env),
            logging=LoggingSettings.from_env(env),
            tracing=TracingSettings.from_env(env),
        )
