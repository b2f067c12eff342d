"""``userstream activity`` as operators run it: a process that serves, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.activity.conftest import SERVING, wait_for_health
from userstream.embedded_nats import NatsServerProcess
from userstream.events import ActivityInput
from userstream.rpc.activity import ActivityClient

pytestmark = pytest.mark.integration

USERSTREAM = str(Path(sys.executable).parent / "userstream")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


@dataclass
class ServiceProcess:
    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    port: int = 0

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.lines if line.startswith("{")]


async def _collect(process: ServiceProcess, listening: asyncio.Future[int]) -> None:
    assert process.process.stderr is not None
    async for raw in process.process.stderr:
        line = raw.decode().rstrip("\n")
        process.lines.append(line)
        if line.startswith("{") and not listening.done():
            event = json.loads(line)
            if event.get("event") == "rpc.listening":
                listening.set_result(int(event["port"]))
    if not listening.done():
        listening.set_exception(RuntimeError("exited before listening:\n" + "\n".join(process.lines)))


def environment(nats_url: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("USERSTREAM_")}
    return {**env, "USERSTREAM_NATS_URL": nats_url, "USERSTREAM_LOG_FORMAT": "json"}


@pytest.fixture
async def service_process(nats_server: NatsServerProcess) -> AsyncIterator[ServiceProcess]:
    process = await asyncio.create_subprocess_exec(
        USERSTREAM, "activity", "--port", "0", env=environment(nats_server.url), stderr=asyncio.subprocess.PIPE
    )
    running = ServiceProcess(process)
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    collector = asyncio.create_task(_collect(running, listening))
    try:
        running.port = await asyncio.wait_for(listening, START_TIMEOUT)
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await collector


async def stop_with(running: ServiceProcess, signum: int) -> int:
    running.process.send_signal(signum)
    return await asyncio.wait_for(running.process.wait(), STOP_TIMEOUT)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_serves_then_stops_cleanly(service_process: ServiceProcess, signum: int) -> None:
    client = ActivityClient(f"127.0.0.1:{service_process.port}")
    try:
        await wait_for_health(client.channel, SERVING, timeout=START_TIMEOUT)
        result = await client.record(ActivityInput(type="page.created", entity_id="p1", organization_id="acme"))
        assert result.cursor.isdigit()
    finally:
        await client.close()
    assert await stop_with(service_process, signum) == 0
    events = [event["event"] for event in service_process.events()]
    assert "process.stopping" in events
    assert events[-1] == "activity.stopped"
    assert not [line for line in service_process.lines if "Traceback" in line]


async def test_stops_cleanly_even_while_nats_is_unreachable(
    service_process: ServiceProcess, nats_server: NatsServerProcess
) -> None:
    client = ActivityClient(f"127.0.0.1:{service_process.port}")
    try:
        await wait_for_health(client.channel, SERVING, timeout=START_TIMEOUT)
    finally:
        await client.close()
    nats_server.kill()
    assert await stop_with(service_process, signal.SIGTERM) == 0


async def test_port_already_taken_fails_fast(service_process: ServiceProcess, nats_server: NatsServerProcess) -> None:
    second = await asyncio.create_subprocess_exec(
        USERSTREAM,
        "activity",
        "--port",
        str(service_process.port),
        env=environment(nats_server.url),
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(second.communicate(), START_TIMEOUT)
    assert second.returncode == 1
    failure = [json.loads(line) for line in stderr.decode().splitlines() if '"process.start_failed"' in line]
    assert len(failure) == 1
    assert f"cannot listen on 127.0.0.1:{service_process.port}" in str(failure[0]["error"])
    assert "Traceback" not in stderr.decode()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("USERSTREAM_RETENTION_AGE", "a week", "USERSTREAM_RETENTION_AGE='a week' is not a number"),
        ("USERSTREAM_POLICY", "/nonexistent/policy.toml", "/nonexistent/policy.toml: cannot read the policy file"),
    ],
)
async def test_bad_configuration_is_one_clear_line(variable: str, value: str, message: str) -> None:
    env = {**environment("nats://127.0.0.1:1"), variable: value}
    process = await asyncio.create_subprocess_exec(
        USERSTREAM, "activity", "--port", "0", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), START_TIMEOUT)
    assert process.returncode == 2
    (line,) = stderr.decode().splitlines()
    assert line.startswith(f"userstream activity: error: {message}")
