"""Limits (429 per user, 503 per worker) and dependency outages (503 + Retry-After, /readyz) — CONTRACT §5."""

from __future__ import annotations

import pytest

from tests.conftest import service_env
from tests.integration.edge.conftest import StackFactory
from tests.support.edge import wait_until
from tests.support.sse import HTTPResponse, open_stream, open_stream_retrying, request_error
from tests.support.stack import Stack
from userstream.acl.service import AclService
from userstream.acl.settings import AclSettings
from userstream.embedded_nats import NatsServerProcess

pytestmark = pytest.mark.integration


def _assert_unavailable(response: HTTPResponse) -> None:
    assert response.status == 503, response.body
    assert response.json()["error"]["code"] == "unavailable"
    assert int(response.headers["retry-after"]) >= 1


async def test_streams_per_user_limit_is_429_and_frees_on_disconnect(make_stack: StackFactory) -> None:
    stack = await make_stack(edge_env={"MAX_STREAMS_PER_USER": "2"})
    first = await stack.stream("alice")
    second = await stack.stream("alice")
    over = await request_error(stack.base_url, headers=stack.auth("alice"))
    assert over.status == 429
    assert over.json()["error"]["code"] == "too_many_streams"
    # Other users are not affected.
    async with await stack.stream("bob") as other:
        assert (await other.next_event()).event == "offset"
    await first.close()
    await wait_until(lambda: stack.edge.runtime.registry.streams_of("alice") == 1, 5)
    async with await stack.stream("alice") as third:
        assert (await third.next_event()).event == "offset"
    await second.close()


async def test_streams_per_worker_limit_is_503_with_retry_after(make_stack: StackFactory) -> None:
    stack = await make_stack(edge_env={"MAX_STREAMS_PER_WORKER": "2"})
    first = await stack.stream("alice")
    second = await open_stream(stack.base_url, "/public/stream")  # anonymous streams count too
    _assert_unavailable(await request_error(stack.base_url, headers=stack.auth("bob")))
    _assert_unavailable(await request_error(stack.base_url, "/public/stream"))
    await first.close()
    await wait_until(lambda: len(stack.edge.runtime.registry.connections) == 1, 5)
    async with await stack.stream("bob") as third:
        assert (await third.next_event()).event == "offset"
    await second.close()


async def test_acl_down_is_503_and_not_ready_then_recovers(stack: Stack, nats_server: NatsServerProcess) -> None:
    async with await stack.stream("alice") as open_before:
        assert (await open_before.next_event()).event == "offset"
        await stack.acl_service.stop()
        _assert_unavailable(await request_error(stack.base_url, headers=stack.auth("alice")))
        await wait_until(lambda: not stack.edge.runtime.ready, 10)
        not_ready = await request_error(stack.base_url, "/readyz")
        _assert_unavailable(not_ready)
        assert "acl" in not_ready.json()["error"]["message"]
        # Streams already open keep flowing: acl is asked only at connect.
        cursor = await stack.membership("alice", "acme", "created", "member")
        (change,) = await open_before.changes(1)
        assert change.id == cursor
    # acl comes back where the edge looks for it.
    port = int(stack.edge.runtime.settings.acl_addr.rsplit(":", 1)[1])
    stack.acl_service = AclService(AclSettings.load(port=port, env=service_env(nats_server.url)))
    await stack.acl_service.start()
    await wait_until(lambda: stack.edge.runtime.ready, 15)
    async with await open_stream_retrying(stack.base_url, headers=stack.auth("alice")) as after:
        assert (await after.next_event()).event == "offset"


async def test_nats_down_is_503_and_not_ready_then_recovers(stack: Stack, nats_server: NatsServerProcess) -> None:
    nats_server.stop()
    await wait_until(lambda: not stack.edge.runtime.log.ready, 10)
    _assert_unavailable(await request_error(stack.base_url, headers=stack.auth("alice")))
    _assert_unavailable(await request_error(stack.base_url, "/public/stream"))
    not_ready = await request_error(stack.base_url, "/readyz")
    _assert_unavailable(not_ready)
    assert "nats" in not_ready.json()["error"]["message"]
    nats_server.start()
    await wait_until(lambda: stack.edge.runtime.ready, 20)
    async with await open_stream_retrying(stack.base_url, headers=stack.auth("alice")) as stream:
        assert (await stream.next_event()).event == "offset"
