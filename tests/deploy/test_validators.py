"""Every deploy file passes its own validator: the checks an operator's tooling would run, offline.

kubernetes-validate --strict against a pinned Kubernetes version, the compose
model and schema, hadolint, yamllint, and `nats-server -t` on every NATS
configuration (the compose nodes' files and the ConfigMap of each rendered
overlay, with the environment its StatefulSet gives it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY, OVERLAYS, find_tool, output_of, run
from tests.deploy.manifests import Manifests, only_container, pod_spec
from userstream.embedded_nats import nats_server_binary

# The oldest Kubernetes the manifests support (deploy/README.md: the preStop
# `sleep` action is on by default from 1.30) and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
COMPOSE_FILE = DEPLOY / "compose" / "compose.yaml"
# compose requires the secrets to be set; the check needs some value, not a real one.
COMPOSE_ENV = {
    "USERSTREAM_JWT_SECRET": "deploy-check-placeholder-secret-0123456789",
    "USERSTREAM_GRPC_TOKEN": "deploy-check-placeholder-grpc-token-0123456789",
    "NATS_ACTIVITY_PASSWORD": "deploy-check-activity-password",
    "NATS_ACL_PASSWORD": "deploy-check-acl-password",
    "NATS_EDGE_PASSWORD": "deploy-check-edge-password",
    "NATS_RELAY_PASSWORD": "deploy-check-relay-password",
}
# The passwords nats/auth.conf reads from the server's environment.
NATS_PASSWORDS = ("NATS_ACTIVITY_PASSWORD", "NATS_ACL_PASSWORD", "NATS_EDGE_PASSWORD", "NATS_RELAY_PASSWORD")
BUILT_IN_KINDS = {
    "Namespace",
    "ConfigMap",
    "Secret",
    "Service",
    "Deployment",
    "StatefulSet",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "Ingress",
    "NetworkPolicy",
}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_is_valid_kubernetes_strictly(overlay: str, version: str, rendered_overlays: dict[str, Path]) -> None:
    validate = find_tool("kubernetes-validate")
    manifest = rendered_overlays[overlay]
    result = run([validate, "--strict", "--kubernetes-version", version, str(manifest)])
    assert result.returncode == 0, output_of(result)
    # Unknown kinds (custom resources) are only warned about: keep to kinds the validator knows.
    assert "WARN" not in result.stdout + result.stderr, output_of(result)
    kinds = {obj["kind"] for obj in Manifests.parse(manifest.read_text()).objects}
    assert kinds <= BUILT_IN_KINDS


def test_compose_file_is_a_valid_compose_model() -> None:
    compose = find_tool("docker-compose")
    result = run([compose, "-f", str(COMPOSE_FILE), "config", "--quiet"], env=COMPOSE_ENV)
    assert result.returncode == 0, output_of(result)


def test_compose_file_matches_the_compose_spec_schema() -> None:
    check = find_tool("check-jsonschema")
    result = run([check, "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)])
    assert result.returncode == 0, output_of(result)


@pytest.mark.parametrize("secret", ["USERSTREAM_JWT_SECRET", "USERSTREAM_GRPC_TOKEN", *NATS_PASSWORDS])
def test_compose_refuses_to_start_without_a_secret(secret: str) -> None:
    compose = find_tool("docker-compose")
    result = run([compose, "-f", str(COMPOSE_FILE), "config", "--quiet"], env={**COMPOSE_ENV, secret: ""})
    assert result.returncode != 0
    assert secret in result.stderr


def test_dockerfile_passes_hadolint() -> None:
    hadolint = find_tool("hadolint")
    docker = DEPLOY / "docker"
    result = run([hadolint, "--config", str(docker / ".hadolint.yaml"), str(docker / "Dockerfile")])
    assert result.returncode == 0, output_of(result)


def test_yaml_files_pass_yamllint() -> None:
    yamllint = find_tool("yamllint")
    result = run([yamllint, "--strict", "-c", str(DEPLOY / ".yamllint.yaml"), str(DEPLOY)])
    assert result.returncode == 0, output_of(result)


@pytest.mark.parametrize("node", ["nats-1", "nats-2", "nats-3"])
def test_compose_nats_config_is_valid(node: str) -> None:
    config = DEPLOY / "compose" / "nats" / f"{node}.conf"
    env = {name: COMPOSE_ENV[name] for name in NATS_PASSWORDS}
    result = run([str(nats_server_binary()), "-t", "-c", str(config)], env=env)
    assert result.returncode == 0, output_of(result)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_nats_config_is_valid_with_the_pod_environment(
    overlay: str, rendered_overlays: dict[str, Path], tmp_path: Path
) -> None:
    manifests = Manifests.parse(rendered_overlays[overlay].read_text())
    statefulset = manifests.get("StatefulSet", "nats")
    volume = next(v for v in pod_spec(statefulset)["volumes"] if v["name"] == "config")
    config = tmp_path / "nats.conf"
    config.write_text(manifests.get("ConfigMap", volume["configMap"]["name"])["data"]["nats.conf"])
    (tmp_path / "auth.conf").write_text(manifests.get("ConfigMap", volume["configMap"]["name"])["data"]["auth.conf"])
    env = manifests.environment(only_container(statefulset))
    env["POD_NAME"] = "nats-0"  # from the downward API in the pod
    # From the userstream-nats Secret in the pod (the values do not matter to the check, their presence does).
    secret_refs = [e["name"] for e in only_container(statefulset)["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    assert sorted(secret_refs) == sorted(NATS_PASSWORDS)
    env |= dict.fromkeys(secret_refs, "placeholder")
    result = run([str(nats_server_binary()), "-t", "-c", str(config)], env=env)
    assert result.returncode == 0, output_of(result)


def test_nats_config_check_catches_mistakes(tmp_path: Path) -> None:
    """The `-t` check is worth running: it rejects unknown keys and unset variables."""
    config = tmp_path / "nats.conf"
    config.write_text("server_name: $NO_SUCH_VARIABLE_IN_THIS_TEST\n")
    assert run([str(nats_server_binary()), "-t", "-c", str(config)]).returncode != 0
    config.write_text("porrt: 4222\n")
    assert run([str(nats_server_binary()), "-t", "-c", str(config)]).returncode != 0


def test_compose_and_kubernetes_share_one_nats_auth_file() -> None:
    compose = (DEPLOY / "compose" / "nats" / "auth.conf").read_text()
    kubernetes = (DEPLOY / "k8s" / "base" / "nats" / "auth.conf").read_text()
    assert compose == kubernetes
