"""Standard gRPC health and server reflection, as generic tools (grpcurl, buf curl, probes) use them."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import RunningActivity
from tests.integration.activity.conftest import SERVICE, SERVING, health

pytestmark = pytest.mark.integration


async def test_health_is_serving_for_the_server_and_the_service(activity: RunningActivity) -> None:
    assert await health(activity.client.channel) == SERVING
    assert await health(activity.client.channel, SERVICE) == SERVING


async def test_health_of_an_unknown_service_is_not_found(activity: RunningActivity) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await health_pb2_grpc.HealthStub(activity.client.channel).Check(
            health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=2
        )
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def reflect(
    channel: grpc.aio.Channel, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter([request]), timeout=5)
    responses = [response async for response in call]
    assert len(responses) == 1
    return responses[0]


async def test_reflection_lists_the_services(activity: RunningActivity) -> None:
    response = await reflect(activity.client.channel, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {service.name for service in response.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


async def test_reflection_describes_the_activity_api(activity: RunningActivity) -> None:
    response = await reflect(
        activity.client.channel, reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)
    )
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(blob)
        for blob in response.file_descriptor_response.file_descriptor_proto
    ]
    activity_file = next(file for file in files if file.package == "userstream.activity.v1")
    (service,) = activity_file.service
    assert [method.name for method in service.method] == ["RecordActivity", "RecordActivities", "GetCursor"]
    message = next(message for message in activity_file.message_type if message.name == "Activity")
    assert [field.name for field in message.field] == [
        "type",
        "entity_id",
        "organization_id",
        "user_id",
        "role",
        "data_json",
        "changed_keys",
        "tx",
        "idempotency_key",
        "public",
        "created_at",
    ]
