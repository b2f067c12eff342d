"""activity's and acl's /metrics (USERSTREAM_METRICS_PORT): call latency by method and code (issue 18)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import start_activity
from tests.support.sse import HTTPResponse, request
from tests.support.stack import start_acl_service
from userstream.embedded_nats import NatsServerProcess
from userstream.errors import InvalidArgumentError
from userstream.events import ActivityInput
from userstream.rpc.acl import AclClient

pytestmark = pytest.mark.integration

RECORD = "/userstream.activity.v1.ActivityService/RecordActivity"
GET_SUBJECT = "/userstream.acl.v1.AclService/GetSubject"


async def _scrape(port: int) -> str:
    response = await request(f"http://127.0.0.1:{port}", "/metrics")
    assert isinstance(response, HTTPResponse)
    assert response.status == 200
    return response.body.decode()


def _count(text: str, method: str, code: str) -> float:
    pattern = rf'^userstream_rpc_server_seconds_count{{code="{code}",method="{re.escape(method)}"}} (\S+)$'
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_activity_and_acl_count_calls_by_method_and_code(nats_server: NatsServerProcess) -> None:
    activity = await start_activity(nats_server.url, METRICS_PORT="0")
    acl_service = await start_acl_service(nats_server.url, METRICS_PORT="0")
    acl = AclClient(f"127.0.0.1:{acl_service.port}")
    try:
        await activity.client.record(ActivityInput(type="page.updated", organization_id="acme", entity_id="p1"))
        await activity.client.record(ActivityInput(type="page.updated", organization_id="acme", entity_id="p2"))
        with pytest.raises(InvalidArgumentError):
            await activity.client.record(ActivityInput(type="page.updated", organization_id="acme"))
        await acl.get_subject("alice")

        text = await _scrape(activity.service.server.metrics_port)
        assert _count(text, RECORD, "OK") == 2
        assert _count(text, RECORD, "INVALID_ARGUMENT") == 1
        assert "userstream_rpc_nats_reconnects_total 0.0" in text
        acl_text = await _scrape(acl_service.server.metrics_port)
        assert _count(acl_text, GET_SUBJECT, "OK") == 1
    finally:
        await acl.close()
        await acl_service.stop()
        await activity.client.close()
        await activity.service.stop()


async def test_without_a_metrics_port_there_are_no_metrics(nats_server: NatsServerProcess) -> None:
    activity = await start_activity(nats_server.url)
    try:
        assert activity.service.server.metrics is None
    finally:
        await activity.client.close()
        await activity.service.stop()
