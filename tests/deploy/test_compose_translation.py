"""How compose.yaml becomes podman containers for the end-to-end test (compose_stack.py), checked offline.

Runs in `make deploy-check` (no podman needed): a key added to compose.yaml
that the translation does not handle fails here, before the end-to-end test.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.deploy.compose_stack import ComposeStack
from tests.deploy.conftest import find_tool, output_of, run
from tests.deploy.test_validators import COMPOSE_ENV, COMPOSE_FILE

PROJECT = "userstream-check"


@pytest.fixture(scope="module")
def stack() -> ComposeStack:
    compose = find_tool("docker-compose")
    args = [compose, "-f", str(COMPOSE_FILE), "--project-name", PROJECT, "config", "--format", "json"]
    result = run(args, env=COMPOSE_ENV)
    assert result.returncode == 0, output_of(result)
    model: dict[str, Any] = json.loads(result.stdout)
    return ComposeStack(model)


def _flags(stack: ComposeStack, service: str, replica: int = 0) -> list[str]:
    return stack._run_flags(stack.replicas(service)[replica])


def _values(flags: list[str], flag: str) -> list[str]:
    return [flags[i + 1] for i, value in enumerate(flags) if value == flag]


def test_every_service_translates(stack: ComposeStack) -> None:
    for service in stack.model["services"]:
        for container in stack.replicas(service):
            flags = stack._run_flags(container)
            assert flags[flags.index("--name") + 1] == container.name
            assert _values(flags, "--network-alias") == [service]


def test_unknown_keys_are_refused_not_dropped(stack: ComposeStack) -> None:
    model = json.loads(json.dumps(stack.model))
    model["services"]["acl"]["privileged"] = True
    changed = ComposeStack(model)
    with pytest.raises(AssertionError, match="privileged"):
        changed._run_flags(changed.replicas("acl")[0])


def test_names_follow_compose(stack: ComposeStack) -> None:
    assert stack.project == PROJECT
    assert stack.network == f"{PROJECT}_default"
    assert [c.name for c in stack.replicas("edge")] == [f"{PROJECT}-edge-1", f"{PROJECT}-edge-2"]
    flags = _flags(stack, "nats-1")
    assert f"{PROJECT}_nats-1-data:/data" in _values(flags, "--volume")


def test_start_order_follows_depends_on(stack: ComposeStack) -> None:
    waves = stack.start_order(["edge", "acl", "activity", "nats-3", "nats-2", "nats-1"])
    assert waves == [["nats-3", "nats-2", "nats-1"], ["activity"], ["acl"], ["edge"]]


def test_the_file_settings_reach_podman(stack: ComposeStack) -> None:
    edge = _flags(stack, "edge", 1)
    assert "--read-only" in edge
    assert _values(edge, "--tmpfs") == ["/tmp"]
    assert _values(edge, "--cap-drop") == ["ALL"]
    assert _values(edge, "--security-opt") == ["no-new-privileges:true"]
    assert _values(edge, "--stop-timeout") == ["20"]
    assert _values(edge, "--restart") == ["unless-stopped"]
    assert json.loads(_values(edge, "--health-cmd")[0])[-1] == "http://127.0.0.1:8000/readyz"
    assert _values(edge, "--health-start-period") == ["60.0s"]
    # Every published port on a free host port, on the address the file gives.
    assert _values(edge, "--publish") == ["8000/tcp"]
    assert _values(_flags(stack, "activity"), "--publish") == ["127.0.0.1::50051/tcp"]
    assert edge[edge.index("userstream:dev") + 1 :] == ["edge", "--host", "0.0.0.0", "--port", "8000"]
    nats = _flags(stack, "nats-2")
    assert _values(nats, "--stop-signal") == ["SIGUSR2"]
    assert _values(nats, "--stop-timeout") == ["50"]
    environment = dict(value.split("=", 1) for value in _values(edge, "--env"))
    assert environment["USERSTREAM_JWT_SECRET"] == COMPOSE_ENV["USERSTREAM_JWT_SECRET"]
