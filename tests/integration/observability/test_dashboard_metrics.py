"""Every metric the dashboard and the alert rules name is one the services really expose (issue 18)."""

from __future__ import annotations

import pytest

from tests.integration.relay.conftest import start_relay
from tests.support.observability import dashboard_queries, exposed_series, metric_names, rule_queries
from tests.support.sse import HTTPResponse, request
from tests.support.stack import start_stack
from userstream.embedded_nats import NatsServerProcess
from userstream.outbox import install

pytestmark = pytest.mark.integration


async def _scrape(base_url: str) -> str:
    response = await request(base_url, "/metrics")
    assert isinstance(response, HTTPResponse)
    assert response.status == 200
    return response.body.decode()


async def test_dashboard_and_rules_name_only_exposed_metrics(nats_server: NatsServerProcess, database: str) -> None:
    install(database)
    stack = await start_stack(nats_server.url, METRICS_PORT="0")
    relay = await start_relay(nats_server.url, database)
    try:
        exposed = exposed_series(await _scrape(stack.base_url))
        exposed |= exposed_series(await _scrape(relay.base_url))
        for server in (stack.activity.service.server, stack.acl_service.server):
            exposed |= exposed_series(await _scrape(f"http://127.0.0.1:{server.metrics_port}"))
    finally:
        await relay.service.stop()
        await stack.stop()
    used = {"dashboard": dashboard_queries(), "rules": rule_queries()}
    for where, queries in used.items():
        named = set().union(*(metric_names(query) for query in queries))
        assert named, where
        assert named <= exposed, f"{where} names metrics no service exposes: {sorted(named - exposed)}"
