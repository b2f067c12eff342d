"""The internal plane's bearer token (USERSTREAM_GRPC_TOKEN), over real gRPC on loopback (issue 19)."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import start_activity
from tests.support.edge import edge_settings, start_edge
from tests.support.sse import open_stream, request_error
from tests.support.stack import SECRET, start_acl_service
from userstream.embedded_nats import NatsServerProcess
from userstream.errors import UserstreamError
from userstream.events import ActivityInput
from userstream.rpc.activity import ActivityClient
from userstream.rpc.auth import authorization_metadata
from userstream.settings import Env, SettingsError, grpc_token
from userstream.tokens import issue_token

pytestmark = pytest.mark.integration

TOKEN = "internal-plane-token-0123456789abcdef"


async def test_activity_refuses_calls_without_the_token(nats_server: NatsServerProcess) -> None:
    running = await start_activity(nats_server.url, GRPC_TOKEN=TOKEN)
    address = running.address
    anonymous = ActivityClient(address)
    wrong = ActivityClient(address, token="another-token-of-the-right-length-000000")
    trusted = ActivityClient(address, token=TOKEN)
    page = ActivityInput(type="page.updated", organization_id="acme", entity_id="p1")
    try:
        for client in (anonymous, wrong):
            with pytest.raises(UserstreamError, match="USERSTREAM_GRPC_TOKEN"):
                await client.record(page)
        recorded = await trusted.record(page)
        assert await trusted.get_cursor() == recorded.cursor  # nothing else was recorded
        async with grpc.aio.insecure_channel(address) as channel:
            # Probes send no metadata: health stays open.
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            # Reflection (a streaming method) is refused without it, and served with it.
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            question = reflection_pb2.ServerReflectionRequest(list_services="")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in stub.ServerReflectionInfo(iter([question]), timeout=5):
                    pass
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
            answers = stub.ServerReflectionInfo(iter([question]), timeout=5, metadata=authorization_metadata(TOKEN))
            (answer,) = [answer async for answer in answers]
            services = answer.list_services_response.service
            assert "userstream.activity.v1.ActivityService" in {service.name for service in services}
    finally:
        for client in (anonymous, wrong, trusted):
            await client.close()
        await running.client.close()
        await running.service.stop()


async def test_the_edge_sends_the_token_to_acl(nats_server: NatsServerProcess) -> None:
    activity = await start_activity(nats_server.url, GRPC_TOKEN=TOKEN)  # creates the log acl follows
    acl = await start_acl_service(nats_server.url, GRPC_TOKEN=TOKEN)
    acl_addr = f"127.0.0.1:{acl.port}"
    with_token = await start_edge(edge_settings(nats_server.url, acl_addr, SECRET, GRPC_TOKEN=TOKEN))
    without = await start_edge(edge_settings(nats_server.url, acl_addr, SECRET), wait_ready=False)
    auth = {"Authorization": f"Bearer {issue_token('alice', SECRET, 3600)}"}
    try:
        async with await open_stream(with_token.base_url, headers=auth) as stream:
            assert (await stream.next_event()).event == "offset"
        refused = await request_error(without.base_url, headers=auth)
        assert refused.status == 503
        assert refused.json()["error"]["code"] == "unavailable"
    finally:
        await with_token.stop()
        await without.stop()
        await acl.stop()
        await activity.client.close()
        await activity.service.stop()


def test_a_short_token_is_refused() -> None:
    with pytest.raises(SettingsError, match="at least 32"):
        grpc_token(Env({"USERSTREAM_GRPC_TOKEN": "short"}))
    assert grpc_token(Env({})) is None
