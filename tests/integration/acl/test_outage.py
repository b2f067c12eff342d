"""NATS down: acl answers UNAVAILABLE and reports NOT_SERVING; NATS back: it catches up and serves again."""

from __future__ import annotations

import pytest

from tests.conftest import RunningActivity
from tests.integration.acl.conftest import RunningAcl, serving
from userstream.embedded_nats import NatsServerProcess
from userstream.errors import UnavailableError
from userstream.events import ActivityInput
from userstream.process import wait_for

pytestmark = pytest.mark.integration


async def test_nats_down_is_unavailable_and_nothing_is_half_written(
    acl: RunningAcl, activity: RunningActivity, nats_server: NatsServerProcess
) -> None:
    await acl.client.grant_membership("alice", "acme", "member")
    nats_server.kill()

    async def not_serving() -> bool:
        return not await serving(acl.address)

    await wait_for(not_serving, timeout=10.0)
    with pytest.raises(UnavailableError):
        await acl.client.grant_membership("alice", "globex", "member")
    with pytest.raises(UnavailableError):
        await acl.client.get_subject("alice", "now")
    with pytest.raises(UnavailableError):
        await acl.client.get_subject("alice")
    with pytest.raises(UnavailableError):
        await acl.client.set_system_role("alice", "admin")

    nats_server.start()

    async def serving_again() -> bool:
        return await serving(acl.address)

    await wait_for(serving_again, timeout=20.0)
    subject = await acl.client.get_subject("alice", "now")
    assert subject.memberships == {"acme": "member"}  # the refused grant was not recorded
    assert subject.system_role == "user"
    # Following resumed: changes recorded elsewhere after the outage are seen, and mutations work.
    await activity.service.wait_ready()
    await wait_for(lambda: activity.service.log.ready, timeout=20.0)
    await activity.client.record(
        ActivityInput(type="membership.created", user_id="alice", organization_id="initech", role="admin")
    )
    await acl.client.grant_membership("alice", "globex", "member")
    latest = await acl.client.get_subject("alice")
    assert latest.memberships == {"acme": "member", "initech": "admin", "globex": "member"}
