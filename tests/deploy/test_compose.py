"""The compose stack's invariants, read from compose's own resolution of the file (`config --format json`)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.deploy.conftest import DEPLOY, find_tool, output_of, run
from tests.deploy.manifests import NatsConfig, duration
from tests.deploy.test_validators import COMPOSE_ENV, COMPOSE_FILE

NATS_NODES = ("nats-1", "nats-2", "nats-3")
SERVICES = {"activity": 50051, "acl": 50052, "edge": 8000}


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    compose = find_tool("docker-compose")
    result = run([compose, "-f", str(COMPOSE_FILE), "config", "--format", "json"], env=COMPOSE_ENV)
    assert result.returncode == 0, output_of(result)
    services: dict[str, Any] = json.loads(result.stdout)["services"]
    return services


def _nats_config(service: dict[str, Any]) -> NatsConfig:
    (mount,) = [v for v in service["volumes"] if v["target"] == "/etc/nats/nats.conf"]
    return NatsConfig.parse((DEPLOY / "compose" / mount["source"].split("deploy/compose/", 1)[1]).read_text())


def test_three_nats_nodes_each_with_its_own_config_routing_to_all(model: dict[str, Any]) -> None:
    data_volumes = set()
    for node in NATS_NODES:
        config = _nats_config(model[node])
        assert config.values["server_name"] == node
        assert sorted(config.routes) == [f"nats://{other}:6222" for other in NATS_NODES]
        # JetStream data survives container re-creation: a named volume per node.
        (data,) = [v for v in model[node]["volumes"] if v["target"] == config.values["store_dir"]]
        assert data["type"] == "volume"
        data_volumes.add(data["source"])
    assert len(data_volumes) == len(NATS_NODES)


def test_nats_nodes_stop_in_lame_duck_mode_within_the_grace_period(model: dict[str, Any]) -> None:
    for node in NATS_NODES:
        service = model[node]
        config = _nats_config(service)
        assert service["stop_signal"] == "SIGUSR2"
        lame_duck = config.seconds("lame_duck_grace_period") + config.seconds("lame_duck_duration")
        assert lame_duck < duration(service["stop_grace_period"])
        assert "/healthz" in " ".join(service["healthcheck"]["test"])


def test_services_run_the_one_image_on_their_ports(model: dict[str, Any]) -> None:
    images = {model[name]["image"] for name in SERVICES}
    assert len(images) == 1
    for name, port in SERVICES.items():
        service = model[name]
        assert service["build"]["dockerfile"] == "deploy/docker/Dockerfile"
        assert service["command"] == [name, "--host", "0.0.0.0", "--port", str(port)]
        # Health checked on the port the service listens on.
        assert str(port) in service["healthcheck"]["test"][-1]


def test_services_wait_for_healthy_dependencies(model: dict[str, Any]) -> None:
    for name in SERVICES:
        depends = model[name]["depends_on"]
        for node in NATS_NODES:
            assert depends[node]["condition"] == "service_healthy"
    assert model["acl"]["depends_on"]["activity"]["condition"] == "service_healthy"
    assert model["edge"]["depends_on"]["acl"]["condition"] == "service_healthy"


def test_environment_points_at_the_stack(model: dict[str, Any]) -> None:
    for name in SERVICES:
        env = model[name]["environment"]
        # Each service connects as its own NATS user (nats/auth.conf), to every node.
        password = COMPOSE_ENV[f"NATS_{name.upper()}_PASSWORD"]
        servers = [server.strip() for server in env["USERSTREAM_NATS_URL"].split(",")]
        assert servers == [f"nats://{name}:{password}@{node}:4222" for node in NATS_NODES]
        assert env["USERSTREAM_GRPC_TOKEN"] == COMPOSE_ENV["USERSTREAM_GRPC_TOKEN"]
        assert env["USERSTREAM_ACTIVITY_ADDR"] == f"activity:{SERVICES['activity']}"
        assert env["USERSTREAM_ACL_ADDR"] == f"acl:{SERVICES['acl']}"
        # The stream and the buckets on every node of the cluster.
        assert int(env["USERSTREAM_STREAM_REPLICAS"]) == len(NATS_NODES)
        policy = [v for v in model[name]["volumes"] if v["target"] == env["USERSTREAM_POLICY"]]
        assert len(policy) == 1
        assert policy[0]["read_only"] is True
    assert model["edge"]["environment"]["USERSTREAM_JWT_SECRET"] == COMPOSE_ENV["USERSTREAM_JWT_SECRET"]
    # The secret goes where it is used, nowhere else.
    assert "USERSTREAM_JWT_SECRET" not in model["activity"]["environment"]
    assert "USERSTREAM_JWT_SECRET" not in model["acl"]["environment"]


def test_two_edges_published_and_drained_before_being_killed(model: dict[str, Any]) -> None:
    edge = model["edge"]
    assert edge["deploy"]["replicas"] == 2
    (port,) = edge["ports"]
    assert port["target"] == SERVICES["edge"]
    low, high = (int(p) for p in port["published"].split("-"))
    assert high - low + 1 == edge["deploy"]["replicas"]
    drain = float(edge["environment"]["USERSTREAM_DRAIN_TIMEOUT"])
    assert drain < duration(edge["stop_grace_period"])
    assert edge["healthcheck"]["test"][-1].endswith("/readyz")


def test_grpc_ports_are_published_on_loopback_only(model: dict[str, Any]) -> None:
    for name in ("activity", "acl"):
        (port,) = model[name]["ports"]
        assert port["host_ip"] == "127.0.0.1"
        assert port["target"] == int(port["published"]) == SERVICES[name]


def test_grpc_services_stop_within_their_grace_period(model: dict[str, Any]) -> None:
    for name in ("activity", "acl"):
        grace = float(model[name]["environment"]["USERSTREAM_SHUTDOWN_GRACE"])
        assert grace < duration(model[name]["stop_grace_period"])


def test_userstream_containers_are_locked_down(model: dict[str, Any]) -> None:
    for name in SERVICES:
        service = model[name]
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]


def test_two_relays_on_the_one_image_after_the_outbox_is_installed(model: dict[str, Any]) -> None:
    relay, install = model["relay"], model["outbox-install"]
    assert relay["image"] == install["image"] == model["activity"]["image"]
    assert relay["command"] == ["relay", "--host", "0.0.0.0", "--port", "8001"]
    # One records, the other stands by (docs/outbox.md); neither is published on the host.
    assert relay["deploy"]["replicas"] == 2
    assert "ports" not in relay
    assert relay["healthcheck"]["test"][-1] == "http://127.0.0.1:8001/readyz"
    assert install["command"] == ["outbox", "install"]
    assert relay["depends_on"]["outbox-install"]["condition"] == "service_completed_successfully"
    assert relay["depends_on"]["activity"]["condition"] == "service_healthy"
    assert install["depends_on"]["postgres"]["condition"] == "service_healthy"
    dsn = relay["environment"]["USERSTREAM_OUTBOX_DSN"]
    assert dsn == install["environment"]["USERSTREAM_OUTBOX_DSN"]
    assert dsn.startswith("postgresql://")
    assert "@postgres:5432/" in dsn
    # The relay's own NATS user (nats/auth.conf); installing the outbox needs no NATS.
    password = COMPOSE_ENV["NATS_RELAY_PASSWORD"]
    nats_urls = [url.strip() for url in relay["environment"]["USERSTREAM_NATS_URL"].split(",")]
    assert nats_urls == [f"nats://relay:{password}@{n}:4222" for n in NATS_NODES]
    for service in (relay, install):
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
    assert "ports" not in model["postgres"]
