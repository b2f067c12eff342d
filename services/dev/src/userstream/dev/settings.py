"""Settings of ``userstream dev``: flags over ``USERSTREAM_DEV_*`` variables over defaults."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from userstream.settings import Env, grpc_token

DEFAULT_DATA_DIR = Path(".userstream")
DEFAULT_NATS_PORT = 4222
DEFAULT_EDGE_PORT = 8000
DEFAULT_ACTIVITY_PORT = 50051
DEFAULT_ACL_PORT = 50052
DEFAULT_RELAY_PORT = 8001
# The dev stack only ever listens on loopback: its edge serves a token-minting API.
HOST = "127.0.0.1"


@dataclass(frozen=True)
class DevSettings:
    data_dir: Path = DEFAULT_DATA_DIR
    # An existing NATS to use instead of starting one (comma separated servers).
    nats_url: str | None = None
    # Port of the embedded nats-server; 0 lets the server choose.
    nats_port: int = DEFAULT_NATS_PORT
    # Service ports; 0 picks a free port at start.
    edge_port: int = DEFAULT_EDGE_PORT
    activity_port: int = DEFAULT_ACTIVITY_PORT
    acl_port: int = DEFAULT_ACL_PORT
    # A PostgreSQL database (libpq DSN or URI) to install the outbox in and relay from; None: no relay.
    outbox_dsn: str | None = None
    relay_port: int = DEFAULT_RELAY_PORT
    demo: bool = True
    traffic: bool = True
    # Seconds every service gets to accept requests before the stack gives up.
    start_timeout: float = 60.0
    # Seconds a service gets to stop after SIGTERM before it is killed.
    stop_timeout: float = 15.0
    # Seconds between two demo changes.
    traffic_interval: float = 1.5
    # Every this many changes, the traffic also grants or revokes a demo membership.
    traffic_membership_every: int = 12
    # Lifetime of the demo tokens printed at start and minted by the demo page.
    token_ttl: float = 86400.0
    # USERSTREAM_GRPC_TOKEN, when set: the services require it, and the dev stack's own clients send it.
    grpc_token: str | None = None

    @classmethod
    def load(
        cls,
        *,
        data_dir: Path = DEFAULT_DATA_DIR,
        nats_url: str | None = None,
        nats_port: int = DEFAULT_NATS_PORT,
        edge_port: int = DEFAULT_EDGE_PORT,
        activity_port: int = DEFAULT_ACTIVITY_PORT,
        acl_port: int = DEFAULT_ACL_PORT,
        outbox_dsn: str | None = None,
        relay_port: int = DEFAULT_RELAY_PORT,
        demo: bool = True,
        traffic: bool = True,
        env: Env | None = None,
    ) -> DevSettings:
        env = env or Env()
        return cls(
            data_dir=data_dir,
            nats_url=nats_url,
            nats_port=nats_port,
            edge_port=edge_port,
            activity_port=activity_port,
            acl_port=acl_port,
            outbox_dsn=outbox_dsn or env.optional_text("OUTBOX_DSN"),
            relay_port=relay_port,
            demo=demo,
            traffic=traffic and demo,  # the traffic works on the demo's organizations
            start_timeout=env.number("DEV_START_TIMEOUT", cls.start_timeout, minimum=1.0),
            stop_timeout=env.number("DEV_STOP_TIMEOUT", cls.stop_timeout, minimum=0.1),
            traffic_interval=env.number("DEV_TRAFFIC_INTERVAL", cls.traffic_interval, minimum=0.01),
            traffic_membership_every=env.integer(
                "DEV_TRAFFIC_MEMBERSHIP_EVERY", cls.traffic_membership_every, minimum=1
            ),
            token_ttl=env.number("DEV_TOKEN_TTL", cls.token_ttl, minimum=1.0),
            grpc_token=grpc_token(env),
        )
