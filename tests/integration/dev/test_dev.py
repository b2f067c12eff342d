"""``userstream dev``: ready line, the printed curl line, token and tail, clean stop, and a crash stopping all."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.dev.running import DevRun, alive, clean_env, command_line, start_dev
from userstream.tokens import verify_token

pytestmark = pytest.mark.integration


def run_curl_line(run: DevRun, seconds: float) -> str:
    """The printed `curl -N …` line, run for ``seconds`` (its output)."""
    words = shlex.split(run.line_starting("curl -N"))
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    result = subprocess.run(
        [*words, "--silent", "--max-time", str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + 10,
        check=False,
    )
    return result.stdout


def read_lines(process: subprocess.Popen[str], count: int, timeout: float) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while len(lines) < count and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
    return lines


def get_stream_start(url: str) -> tuple[int, str]:
    """Status and content type of an endpoint that streams forever (the body is not read)."""
    with urllib.request.urlopen(url, timeout=5) as response:  # our own loopback URL
        return response.status, response.headers.get("content-type", "")


def get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=5) as response:  # our own loopback URL
        return response.status, response.headers.get("content-type", ""), response.read().decode()


def test_dev_comes_up_serves_what_it_prints_and_stops_cleanly(tmp_path: Path, dev_runs: list[DevRun]) -> None:
    run = start_dev(tmp_path, DEV_TRAFFIC_INTERVAL="0.2")
    dev_runs.append(run)
    run.wait_ready()
    assert run.lines[-1] == "userstream ready"

    # The curl line a newcomer pastes shows the live stream, demo traffic included.
    output = run_curl_line(run, 3)
    assert output.startswith("retry: ")
    assert "event: offset" in output
    assert "event: change" in output

    # Every printed URL answers.
    edge = run.edge_url
    assert get(edge + "/")[1].startswith("text/html")
    assert "userstream.connect" not in get(edge + "/")[2]  # the page loads the client, it does not inline it
    assert get(edge + "/client.js")[1].startswith("text/javascript")
    assert get(edge + "/readyz")[0] == 200
    assert get_stream_start(edge + "/public/stream") == (200, "text/event-stream")
    token = run.token_of("carol")
    assert get_stream_start(f"{edge}/me/stream?access_token={token}") == (200, "text/event-stream")
    assert "userstream_edge_open_streams" in get(edge + "/metrics")[2]
    demo = json.loads(get(edge + "/dev/demo")[2])
    assert {user["id"] for user in demo["users"]} >= {"alice", "bob", "carol", "dave"}

    # `userstream token` signs with the data dir's secret, as the printed tokens are.
    secret = (run.data_dir / "jwt-secret").read_text().strip()
    assert verify_token(run.token_of("alice"), secret).user_id == "alice"
    signed = subprocess.run(
        [sys.executable, "-m", "userstream.cli", "token", "bob", "--ttl", "60", "--data-dir", str(run.data_dir)],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=True,
    ).stdout.strip()
    assert verify_token(signed, secret).user_id == "bob"

    # `userstream tail --json` prints the stream as JSON lines.
    tail = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "userstream.cli",
            "tail",
            "--user",
            "alice",
            "--json",
            "--url",
            edge,
            "--data-dir",
            str(run.data_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        lines = [json.loads(line) for line in read_lines(tail, 2, timeout=15)]
    finally:
        tail.send_signal(signal.SIGINT)
        assert tail.wait(10) == 0
        assert tail.stdout is not None
        tail.stdout.close()
    assert [line["event"] for line in lines] == ["offset", "change"]
    assert lines[1]["data"]["activityId"] == lines[1]["id"]

    children = run.children()
    assert len(children) == 4  # nats-server, activity, acl, edge
    assert run.stop() == 0
    assert [pid for pid in children if alive(pid)] == []
    assert "Traceback" not in run.stderr


def test_a_crashed_service_is_reported_and_stops_the_stack(tmp_path: Path, dev_runs: list[DevRun]) -> None:
    run = start_dev(tmp_path, "--no-traffic")
    dev_runs.append(run)
    run.wait_ready()
    children = run.children()
    (acl,) = [pid for pid in children if " acl " in command_line(pid)]
    os.kill(acl, signal.SIGKILL)
    status = run.process.wait(30)
    assert status != 0
    assert "the acl service exited" in run.stderr
    assert [pid for pid in children if alive(pid)] == []


def test_ctrl_c_after_the_reader_of_its_output_is_gone_still_stops_everything(
    tmp_path: Path, dev_runs: list[DevRun]
) -> None:
    # `userstream dev 2>&1 | tee log`, then Ctrl-C: tee dies first, and every later write hits a closed pipe.
    run = start_dev(tmp_path, "--no-traffic", merge_stderr=True, read=False)
    dev_runs.append(run)
    stdout = run.process.stdout
    assert stdout is not None
    while stdout.readline().rstrip("\n") != "userstream ready":
        assert run.process.poll() is None, "exited before ready"
    children = run.children()
    stdout.close()  # the pipe has no reader from here on
    run.process.send_signal(signal.SIGINT)
    assert run.process.wait(30) == 0
    assert [pid for pid in children if alive(pid)] == []
