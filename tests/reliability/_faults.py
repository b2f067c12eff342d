"""The faults a run can suffer, each one a ``Fault`` that strikes mid-workload and notes what it observed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from collections.abc import Callable

import nats

from tests.reliability._soak import Fault, RunContext
from tests.support.cluster import NatsCluster
from tests.support.sse import HTTPResponse, SSEStream, request
from userstream.embedded_nats import NatsServerProcess
from userstream.errors import UnavailableError
from userstream.events import ActivityInput

# Seconds a service or node stays down.
DOWN_FOR = 2.0
# Seconds within which a call to a dead activity service must fail.
FAIL_FAST = 1.0
# Seconds the edges may keep answering 503 after acl is back (gRPC reconnect backoff).
ACL_RETURN = 15.0


def _delivered(context: RunContext) -> int:
    return sum(len(client.received) for client in context.clients)


def restart_nats(server: NatsServerProcess, *, at: float = 0.3) -> Fault:
    """The single NATS server crashes (SIGKILL) and comes back on the same port and store."""

    async def action(context: RunContext) -> None:
        server.kill()
        down = time.monotonic()
        await asyncio.sleep(DOWN_FOR)
        await asyncio.to_thread(server.start)
        context.notes["nats down (s)"] = round(time.monotonic() - down, 1)

    return Fault("nats restart", at, action)


def freeze_nats(server: NatsServerProcess, seconds: float, *, at: float = 0.3) -> Fault:
    """The single NATS server stops answering (SIGSTOP) without closing a connection, then resumes (SIGCONT).

    Longer than the edge waits for a catch-up (twice the request timeout), so channels give up and
    close their streams `unavailable`; recording calls time out into UNAVAILABLE and are retried.
    """

    async def action(context: RunContext) -> None:
        assert server.pid is not None
        for client in context.clients:  # a reconnect storm, so that catch-ups are in flight when NATS stops
            client.drop()
        await asyncio.sleep(0.01)
        os.kill(server.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        context.notes["nats frozen (s)"] = seconds

    return Fault("nats freeze", at, action)


def kill_cluster_node(cluster: NatsCluster, choose: str, *, at: float = 0.3) -> Fault:
    """A cluster member crashes: ``choose`` is ``edge`` (one an edge is connected to) or ``leader`` (the stream's)."""

    async def action(context: RunContext) -> None:
        if choose == "leader":
            victim = await _stream_leader(cluster)
        else:
            victim = await asyncio.to_thread(_node_with_client, cluster, "userstream-edge")
        context.notes["killed node"] = f"{victim.name} ({choose})"
        victim.kill()
        context.notes["nats nodes left"] = sum(node.running for node in cluster.nodes)

    return Fault(f"cluster loses the {choose}'s node", at, action)


async def _stream_leader(cluster: NatsCluster, stream: str = "ACTIVITY") -> NatsServerProcess:
    client = await nats.connect(servers=[node.url for node in cluster.nodes if node.running], connect_timeout=5)
    try:
        info = await client.jsm(timeout=10).stream_info(stream)
    finally:
        await client.close()
    assert info.cluster is not None
    assert info.cluster.leader is not None
    (leader,) = [node for node in cluster.nodes if node.name == info.cluster.leader]
    return leader


def _node_with_client(cluster: NatsCluster, client_name: str) -> NatsServerProcess:
    for node in cluster.nodes:
        url = f"http://127.0.0.1:{node.monitor_port}/connz?limit=1024"
        with urllib.request.urlopen(url, timeout=5) as response:  # our own loopback monitor
            connections = json.loads(response.read())["connections"] or []
        if any(connection.get("name") == client_name for connection in connections):
            return node
    raise AssertionError(f"no node has a client named {client_name}")


def kill_edge(index: int = 0, *, at: float = 0.3) -> Fault:
    """An edge process is killed (-9): its clients resume elsewhere; it restarts on the same port."""

    async def action(context: RunContext) -> None:
        edge = context.deployment.edges[index]
        served = sum(client.edge == index for client in context.clients)
        edge.kill()
        await asyncio.sleep(DOWN_FOR / 2)
        edge.start()
        await edge.wait_ready()
        context.notes["streams on the killed edge"] = served

    return Fault("edge kill -9", at, action)


def kill_acl(*, at: float = 0.3) -> Fault:
    """acl is killed (-9): open streams continue, new connects get 503 until it is back."""

    async def action(context: RunContext) -> None:
        deployment, workload = context.deployment, context.workload
        workload.acl_available = False
        deployment.acl.kill()
        before = _delivered(context)
        refusals = []
        for edge in deployment.edge_urls:
            for headers in ({}, {"Last-Event-ID": workload.cursors[-1]}):
                answer = await request(edge, "/me/stream", headers={**deployment.auth("newcomer"), **headers})
                refusals.append(_refusal(answer))
        await asyncio.sleep(DOWN_FOR)
        context.notes["delivered while acl was down"] = _delivered(context) - before
        context.notes["new connects answered while acl was down"] = sorted(set(refusals))
        deployment.acl.start()
        await deployment.acl.wait_ready()
        back = time.monotonic()
        for edge in deployment.edge_urls:
            await _until_served(edge, deployment.auth("newcomer"))
        context.notes["seconds until edges serve again"] = round(time.monotonic() - back, 1)
        workload.acl_available = True

    return Fault("acl kill -9", at, action)


def _refusal(answer: SSEStream | HTTPResponse) -> str:
    if isinstance(answer, SSEStream):
        answer.writer.close()
        return "200 (stream opened)"
    body = answer.json()
    retry_after = "with Retry-After" if "retry-after" in answer.headers else "WITHOUT Retry-After"
    return f"{answer.status} {body['error']['code']} {retry_after}"


async def _until_served(edge: str, headers: dict[str, str]) -> None:
    deadline = asyncio.get_running_loop().time() + ACL_RETURN
    while True:
        answer = await request(edge, "/me/stream", headers=headers)
        if isinstance(answer, SSEStream):
            answer.writer.close()
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{edge} still answers {answer.status} {ACL_RETURN} s after acl came back")
        await asyncio.sleep(0.1)


def kill_activity(*, at: float = 0.3, delay: Callable[[], float] = lambda: 0.05) -> Fault:
    """activity is killed (-9), likely during a batch: calls fail fast with UNAVAILABLE; retries complete it."""

    async def action(context: RunContext) -> None:
        deployment = context.deployment
        await asyncio.sleep(delay())
        deployment.activity.kill()
        probe = ActivityInput(type="page.updated", organization_id="o0", entity_id="probe", idempotency_key="probe")
        started = time.monotonic()
        try:
            await deployment.activity_client.record(probe)
        except UnavailableError:
            context.notes["a call to the dead activity failed after (ms)"] = round((time.monotonic() - started) * 1000)
        else:
            raise AssertionError("a call to a killed activity service succeeded")
        await asyncio.sleep(DOWN_FOR / 2)
        deployment.activity.start()
        await deployment.activity.wait_ready()

    return Fault("activity kill -9", at, action)
