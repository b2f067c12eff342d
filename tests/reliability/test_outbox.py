"""The soak's outbox variant: part of the workload written through the PostgreSQL outbox, two relays killed
at random moments, the same oracle: nothing lost, doubled or leaked, on any stream."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from tests.reliability._soak import Chaos, Fault, RunContext, run
from tests.reliability._workload import Shape
from tests.reliability.conftest import Deploy, assert_clean
from tests.support.processes import ServiceProcess, clean_environment
from tests.support.sse import HTTPResponse, request
from userstream.embedded_nats import NatsServerProcess
from userstream.outbox import install

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

SHAPE = Shape(users=10, orgs=4, events=3000, batch=(20, 150), churn=(0, 2), pause=0.1)
CHAOS = Chaos(drop_every=0.5, late_clients=2, tabs=1)


async def _active(relays: list[ServiceProcess]) -> ServiceProcess | None:
    for relay in relays:
        try:
            response = await request(relay.base_url, "/readyz", timeout=1.0)
        except (OSError, TimeoutError, ValueError, IndexError):
            continue
        if isinstance(response, HTTPResponse) and json.loads(response.body).get("role") == "active":
            return relay
    return None


def kill_relays(relays: list[ServiceProcess], rng: random.Random, times: int) -> Fault:
    """The active relay is killed (SIGKILL) at a random moment, ``times`` times; the standby takes over."""

    async def action(context: RunContext) -> None:
        kills = 0
        for _ in range(times):
            await asyncio.sleep(rng.uniform(0.1, 0.8))
            active = await _active(relays)
            if active is None:
                continue
            active.kill()
            kills += 1
            await asyncio.sleep(rng.uniform(0.0, 1.5))
            active.start()
            await active.wait_ready()
        context.notes["relays killed"] = kills

    return Fault("relay kills", 0.1, action)


@pytest.mark.timeout(300)
async def test_outbox_share_with_relay_kills(
    deploy: Deploy, nats_server: NatsServerProcess, database: str, tmp_path: Path
) -> None:
    install(database)
    async with deploy(nats_server.url) as deployment:
        env = clean_environment(
            NATS_URL=nats_server.url,
            OUTBOX_DSN=database,
            POLICY=str(deployment.root / "policy.toml"),
            LOG_FORMAT="json",
            RELAY_POLL_INTERVAL="0.02",
        )
        relays = [ServiceProcess("relay", env, tmp_path / f"relay{index}.log") for index in range(2)]
        for relay in relays:
            relay.start()
        try:
            await asyncio.gather(*(relay.wait_ready() for relay in relays))
            fault = kill_relays(relays, random.Random(31), times=5)
            result = await run(deployment, SHAPE, seed=31, chaos=CHAOS, fault=fault, outbox=(database, 0.5))
            assert_clean(result, deployment)
            assert [relay.command for relay in relays if not relay.running] == []
        finally:
            for relay in relays:
                relay.terminate()
    assert result.workload.stats["outbox rows"] > 500
    assert result.notes["relays killed"] >= 3
