"""Settings of the acl service: flags over ``USERSTREAM_*`` variables over defaults."""

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

DEFAULT_PORT = 50052


@dataclass(frozen=True)
class AclTuning:
    """acl's own timeouts, limits and names (``USERSTREAM_ACL_*``)."""

    # Seconds between snapshots of the membership projection (also written at shutdown).
    snapshot_interval: float = 60.0
    # The JetStream stream holding snapshots (chunked: a snapshot may exceed one message).
    snapshot_stream: str = "ACL_SNAPSHOTS"
    # Bytes per snapshot chunk; below NATS's default 1 MiB message limit.
    snapshot_chunk_bytes: int = 512 * 1024
    # The JetStream key-value bucket holding system roles.
    roles_bucket: str = "ACL_SYSTEM_ROLES"
    # Minimum seconds between the starts of two barrier rounds (reads of the log's head): a
    # reconnect storm of GetSubject("now") costs at most two NATS requests per interval.
    barrier_interval: float = 0.001
    # Seconds a call waits for this replica to apply an event it knows exists (its own write,
    # or the last membership event of a barrier) before answering UNAVAILABLE.
    apply_timeout: float = 5.0
    # Attempts of a membership change that lost an optimistic-concurrency race.
    mutation_attempts: int = 8
    # Items per CheckAccess call.
    check_access_max_items: int = 1000
    # Seconds between heartbeats of the consumers following the log and the roles bucket;
    # a consumer silent for two of them is recreated.
    consumer_heartbeat: float = 1.0
    # Seconds after which the server deletes a consumer nobody reads (a replica that died).
    consumer_inactive_threshold: float = 30.0
    # Start even when the log lost events the snapshot does not cover (operator's decision).
    accept_retention_gap: bool = False

    @classmethod
    def from_env(cls, env: Env, *, accept_retention_gap: bool = False) -> AclTuning:
        return cls(
            snapshot_interval=env.number("ACL_SNAPSHOT_INTERVAL", cls.snapshot_interval, minimum=0.1),
            snapshot_stream=env.text("ACL_SNAPSHOT_STREAM", cls.snapshot_stream),
            snapshot_chunk_bytes=env.integer("ACL_SNAPSHOT_CHUNK_BYTES", cls.snapshot_chunk_bytes, minimum=1024),
            roles_bucket=env.text("ACL_ROLES_BUCKET", cls.roles_bucket),
            barrier_interval=env.number("ACL_BARRIER_INTERVAL", cls.barrier_interval),
            apply_timeout=env.number("ACL_APPLY_TIMEOUT", cls.apply_timeout, minimum=0.01),
            mutation_attempts=env.integer("ACL_MUTATION_ATTEMPTS", cls.mutation_attempts, minimum=1),
            check_access_max_items=env.integer("ACL_CHECK_ACCESS_MAX_ITEMS", cls.check_access_max_items, minimum=1),
            consumer_heartbeat=env.number("ACL_CONSUMER_HEARTBEAT", cls.consumer_heartbeat, minimum=0.1),
            consumer_inactive_threshold=env.number(
                "ACL_CONSUMER_INACTIVE_THRESHOLD", cls.consumer_inactive_threshold, minimum=1.0
            ),
            accept_retention_gap=accept_retention_gap,
        )


@dataclass(frozen=True)
class AclSettings:
    server: GrpcServerSettings
    nats: NatsSettings
    stream: LogStreamSettings
    policy: Policy
    limits: Limits
    logging: LoggingSettings
    tuning: AclTuning
    # OpenTelemetry (the standard OTEL_* variables); off unless an OTLP endpoint is set.
    tracing: TracingSettings = field(default_factory=TracingSettings)

    @classmethod
    def load(
        cls,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        nats_url: str | None = None,
        accept_retention_gap: bool = False,
        env: Env | None = None,
    ) -> AclSettings:
        env = env or Env()
        return cls(
            server=GrpcServerSettings.from_env(env, host, port),
            nats=NatsSettings.from_env(env, nats_url),
            stream=LogStreamSettings.from_env(env),
            policy=PolicySettings.from_env(env).policy,
            limits=limits_from_env(env),
            logging=LoggingSettings.from_env(env),
            tuning=AclTuning.from_env(env, accept_retention_gap=accept_retention_gap),
            tracing=TracingSettings.from_env(env),
        )
