"""The examples in docs/activity.md work as written."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import RunningActivity
from userstream.cursor import parse_cursor
from userstream.embedded_nats import NatsServerProcess

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[3] / "docs" / "activity.md"
BUF = str(Path(sys.executable).parent / "buf")


def code_block(language: str, containing: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    (block,) = [block for block in blocks if containing in block]
    return str(block)


async def run(*command: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_python_snippet_records_and_sees_the_event_on_live(
    activity: RunningActivity, nats_server: NatsServerProcess
) -> None:
    env = {**os.environ, "USERSTREAM_ACTIVITY_ADDR": activity.address, "USERSTREAM_NATS_URL": nats_server.url}
    status, stdout, stderr = await run(sys.executable, "-c", code_block("python", "live.org.acme"), env=env)
    assert status == 0, stderr
    recorded, live, body = stdout.splitlines()
    cursor = recorded.removeprefix("recorded at cursor ")
    assert live == f"live: live.org.acme Nats-Sequence: {parse_cursor(cursor).sequence}"
    assert body.startswith('{"type":"page.updated","action":"update","entityType":"page"')
    assert body.endswith('"data":{"title": "Hello"}}')


async def test_buf_curl_example_records_through_reflection(activity: RunningActivity) -> None:
    block = code_block("sh", "buf curl").replace("\\\n", " ").replace("127.0.0.1:50051", activity.address)
    words = [word.strip("'") for word in re.findall(r"'[^']*'|\S+", block)]
    assert words[0] == ".venv/bin/buf"
    status, stdout, stderr = await run(BUF, *words[1:], env=dict(os.environ))
    assert status == 0, stderr
    assert '"cursor":' in stdout
    assert await activity.client.get_cursor() in stdout
