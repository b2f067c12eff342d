"""``userstream acl`` as an operator runs it: a process that serves, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.conftest import RunningActivity
from tests.integration.acl.conftest import serving
from tests.support.cluster import free_port
from userstream.embedded_nats import NatsServerProcess
from userstream.process import wait_for
from userstream.rpc.acl import AclClient

pytestmark = pytest.mark.integration


async def test_the_command_serves_and_stops_on_sigterm(
    activity: RunningActivity, nats_server: NatsServerProcess, tmp_path: Path
) -> None:
    port = free_port()
    environment = {key: value for key, value in os.environ.items() if not key.startswith("USERSTREAM_")}
    environment |= {"USERSTREAM_NATS_URL": nats_server.url, "USERSTREAM_LOG_FORMAT": "console"}
    with (tmp_path / "acl.log").open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "userstream.cli",
            "acl",
            "--port",
            str(port),
            env=environment,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
        )
    address = f"127.0.0.1:{port}"
    try:

        async def up() -> bool:
            return await serving(address)

        await wait_for(up, timeout=30.0, interval=0.1)
        client = AclClient(address)
        try:
            await client.grant_membership("alice", "acme", "member")
            assert (await client.get_subject("alice")).memberships == {"acme": "member"}
        finally:
            await client.close()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert "acl.snapshot_written" in (tmp_path / "acl.log").read_text()
