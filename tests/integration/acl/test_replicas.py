"""Several acl replicas: the same answers at the same cursor, and concurrent changes linearised by the log."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from tests.conftest import RunningActivity
from tests.integration.acl.conftest import RunningAcl, read_membership_log, replay, start_acl
from userstream.embedded_nats import NatsServerProcess
from userstream.errors import AlreadyExistsError, NotFoundError
from userstream.events import ActivityInput
from userstream.events.model import Action

pytestmark = pytest.mark.integration

USERS = ["u1", "u2", "u3"]
ORGS = ["o1", "o2", "o3"]


@pytest.fixture
async def replicas(activity: RunningActivity, nats_server: NatsServerProcess) -> AsyncIterator[list[RunningAcl]]:
    running = [await start_acl(nats_server.url), await start_acl(nats_server.url)]
    try:
        yield running
    finally:
        for replica in running:
            await replica.close()


async def test_two_replicas_agree_at_the_same_cursor(replicas: list[RunningAcl], activity: RunningActivity) -> None:
    first, second = replicas
    cursors = [await activity.client.get_cursor()]
    cursors.append((await first.client.grant_membership("u1", "o1", "member")).cursor)
    cursors.append((await second.client.grant_membership("u1", "o2", "admin")).cursor)
    recorded = await activity.client.record(
        ActivityInput(type="membership.created", user_id="u2", organization_id="o1", role="member")
    )
    cursors.append(recorded.cursor)
    cursors.append((await second.client.revoke_membership("u1", "o1")).cursor)
    cursors.append((await first.client.update_membership("u2", "o1", "admin")).cursor)
    await first.client.set_system_role("u2", "admin")

    for user_id in ("u1", "u2", "u3"):
        for cursor in cursors:
            answers = [await replica.client.get_subject(user_id, cursor) for replica in replicas]
            assert answers[0] == answers[1], (user_id, cursor)
        now = [await replica.client.get_subject(user_id, "now") for replica in replicas]
        assert now[0].memberships == now[1].memberships
    # A system role written through one replica reaches the other within moments.
    for _ in range(200):
        if (await second.client.get_subject("u2")).system_role == "admin":
            break
        await asyncio.sleep(0.01)
    assert (await second.client.get_subject("u2")).system_role == "admin"


async def test_a_change_through_one_replica_is_seen_by_the_other_at_now(replicas: list[RunningAcl]) -> None:
    first, second = replicas
    change = await first.client.grant_membership("u3", "o3", "member")
    subject = await second.client.get_subject("u3", "now")
    assert subject.memberships == {"o3": "member"}
    assert int(subject.cursor) >= int(change.cursor)
    assert (await second.client.get_subject("u3", change.cursor)).memberships == {"o3": "member"}


async def test_concurrent_changes_end_in_exactly_the_state_the_log_implies(
    replicas: list[RunningAcl], nats_server: NatsServerProcess
) -> None:
    outcomes: list[str] = []

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        client = replicas[seed % 2].client
        for _ in range(12):
            user_id, organization_id = rng.choice(USERS), rng.choice(ORGS)
            operation = rng.choice(["grant", "grant", "update", "revoke"])
            try:
                if operation == "grant":
                    await client.grant_membership(user_id, organization_id, rng.choice(["admin", "member"]))
                elif operation == "update":
                    await client.update_membership(user_id, organization_id, rng.choice(["admin", "member"]))
                else:
                    await client.revoke_membership(user_id, organization_id)
                outcomes.append("ok")
            except (AlreadyExistsError, NotFoundError):
                outcomes.append("refused")

    await asyncio.gather(*(worker(seed) for seed in range(8)))
    logged = await read_membership_log(nats_server.url)
    assert len(logged) == outcomes.count("ok")  # every success recorded once, every refusal nothing

    # Linearised: replayed in log order, each event was valid against the state right before it.
    state: dict[str, dict[str, str]] = {}
    violations = []
    for entry in logged:
        event = entry.event
        memberships = state.setdefault(event.user_id, {})
        current = memberships.get(event.organization_id)
        valid = current is None if event.action is Action.CREATE else current is not None
        if event.action is Action.DELETE:
            valid = valid and event.role == current  # a revocation records the role the member had
        if not valid:
            history = [
                e
                for e in logged
                if (e.event.user_id, e.event.organization_id) == (event.user_id, event.organization_id)
            ]
            violations.append((entry, current, history))
        if event.action is Action.DELETE:
            memberships.pop(event.organization_id, None)
        else:
            assert event.role is not None
            memberships[event.organization_id] = event.role
    assert not violations
    expected = replay(logged)
    for replica in replicas:
        for user_id in USERS:
            subject = await replica.client.get_subject(user_id, "now")
            assert subject.memberships == expected.get(user_id, {}), user_id
