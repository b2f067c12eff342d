"""deploy/compose/compose.yaml run with podman, service by service, for the end-to-end test.

compose.yaml stays the single source: compose itself (the pinned `docker-compose`,
no daemon needed) resolves the file (`config --format json`: anchors, variables,
replicas, relative paths), and each resolved service becomes ``podman run``
flags here, one for one. Anything in the model this module does not translate
fails the test instead of being dropped silently, so a new setting in
compose.yaml is either honoured here or noticed.

Why not podman-compose: with Debian's podman 4.3 it passes flags podman does
not know (``--health-startup-interval`` for ``start_interval``) and ignores
``condition: service_healthy``; and without systemd (containers, CI) podman
never runs health checks on its own. Here the test starts services in the
order of their ``depends_on``, and runs each container's health check itself
(``podman healthcheck run``: the check compose.yaml defines, inside the
container) until it passes — exactly what ``service_healthy`` waits for.

Differences from `docker compose up`, on purpose: published ports get a free
host port each (podman picks it; the test reads it back) so that the stack
cannot collide with anything on the machine, and every name (containers,
network, volumes) carries a project name unique to the run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from tests.deploy import podman
from tests.deploy.manifests import duration

# Keys of a resolved service that become podman flags (see _run_flags), and the
# ones that need none: build (the image is built beforehand), deploy (replicas
# read here), depends_on (the start order), networks (the project's default).
_TRANSLATED = {
    "image", "command", "entrypoint", "environment", "volumes", "ports", "read_only", "tmpfs", "cap_drop",
    "cap_add", "security_opt", "stop_signal", "stop_grace_period", "restart", "healthcheck", "user",
    "working_dir", "hostname", "labels",
}  # fmt: skip
# expose: documentation only, every port is reachable on the project network.
_HANDLED_ELSEWHERE = {"build", "deploy", "depends_on", "networks", "expose"}
_HEALTH_POLL = 1.0


@dataclass(frozen=True)
class Container:
    service: str
    name: str


@dataclass
class ComposeStack:
    """The services of one compose model (``docker compose config`` JSON) as podman containers."""

    model: dict[str, Any]
    containers: list[Container] = field(default_factory=list)

    @property
    def project(self) -> str:
        name: str = self.model["name"]
        return name

    @property
    def network(self) -> str:
        """The project's default network, as compose names it."""
        name: str = self.model["networks"]["default"]["name"]
        return name

    def volume(self, key: str) -> str:
        """A named volume's real name (compose prefixes the project)."""
        name: str = self.model["volumes"][key]["name"]
        return name

    def service(self, name: str) -> dict[str, Any]:
        service: dict[str, Any] = self.model["services"][name]
        return service

    def replicas(self, name: str) -> list[Container]:
        """The containers of service ``name``, as compose v2 names them (``<project>-<service>-<n>``)."""
        count = int(self.service(name).get("deploy", {}).get("replicas", 1))
        return [Container(name, f"{self.project}-{name}-{index}") for index in range(1, count + 1)]

    def start_order(self, services: list[str]) -> list[list[str]]:
        """``services`` in waves: each wave depends only on earlier ones (compose's order)."""
        remaining = list(services)
        waves: list[list[str]] = []
        started: set[str] = set()
        while remaining:
            wave = [s for s in remaining if set(self.service(s).get("depends_on", {})) & set(services) <= started]
            assert wave, f"a dependency cycle among {remaining}"
            waves.append(wave)
            started.update(wave)
            remaining = [s for s in remaining if s not in wave]
        return waves

    def up(self, services: list[str], health_timeout: float) -> None:
        """Start ``services`` (named explicitly: others in the file are left alone) in dependency order.

        Every dependency a later service names must be among ``services``; each
        wave is healthy (or running, without a health check) before the next starts.
        """
        for name in services:
            missing = set(self.service(name).get("depends_on", {})) - set(services)
            assert not missing, f"{name} depends on {missing}: start them too"
        podman.podman("network", "create", "--label", f"io.userstream.test.project={self.project}", self.network)
        for wave in self.start_order(services):
            started = []
            for name in wave:
                for container in self.replicas(name):
                    self.containers.append(container)  # first: down() removes it even if `run` fails half-way
                    podman.podman("run", "--detach", "--pull", "never", *self._run_flags(container))
                    started.append(container)
            self.wait_healthy(started, health_timeout)

    def _run_flags(self, container: Container) -> list[str]:
        service = self.service(container.service)
        unknown = set(service) - _TRANSLATED - _HANDLED_ELSEWHERE
        assert not unknown, f"compose.yaml's {container.service} uses {sorted(unknown)}: translate them here"
        flags = [
            "--name",
            container.name,
            "--network",
            self.network,
            "--network-alias",
            container.service,
            "--label",
            f"io.userstream.test.project={self.project}",
            *podman.ulimits(),
        ]
        for key, value in service.get("environment", {}).items():
            flags += ["--env", f"{key}={'' if value is None else value}"]
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                source = volume["source"]
            else:
                assert volume["type"] == "volume", volume
                source = self.volume(volume["source"])
            flags += ["--volume", f"{source}:{volume['target']}{':ro' if volume.get('read_only') else ''}"]
        for port in service.get("ports", []):
            # A free host port (podman picks it), on the address compose.yaml chose (loopback for gRPC).
            target = f"{port['target']}/{port.get('protocol', 'tcp')}"
            flags += ["--publish", f"{port['host_ip']}::{target}" if port.get("host_ip") else target]
        if service.get("read_only"):
            flags.append("--read-only")
        for path in service.get("tmpfs", []):
            flags += ["--tmpfs", path]
        for capability in service.get("cap_drop", []):
            flags += ["--cap-drop", capability]
        for capability in service.get("cap_add", []):
            flags += ["--cap-add", capability]
        for option in service.get("security_opt", []):
            flags += ["--security-opt", option]
        if "stop_signal" in service:
            flags += ["--stop-signal", service["stop_signal"]]
        if "stop_grace_period" in service:
            flags += ["--stop-timeout", str(round(duration(service["stop_grace_period"])))]
        if "restart" in service:
            flags += ["--restart", service["restart"]]
        if "user" in service:
            flags += ["--user", service["user"]]
        if "working_dir" in service:
            flags += ["--workdir", service["working_dir"]]
        if "hostname" in service:
            flags += ["--hostname", service["hostname"]]
        for key, value in service.get("labels", {}).items():
            flags += ["--label", f"{key}={value}"]
        flags += self._healthcheck_flags(service.get("healthcheck"))
        if service.get("entrypoint") is not None:
            flags += ["--entrypoint", json.dumps(service["entrypoint"])]
        flags.append(service["image"])
        flags += service.get("command") or []  # null: the image's own command
        return flags

    @staticmethod
    def _healthcheck_flags(check: dict[str, Any] | None) -> list[str]:
        if not check:
            return []
        if check.get("disable"):
            return ["--no-healthcheck"]
        test = check["test"]
        kind, *command = test
        if kind == "CMD":
            flags = ["--health-cmd", json.dumps(command)]
        else:
            assert kind == "CMD-SHELL", test
            flags = ["--health-cmd", command[0]]
        options = {
            "interval": "--health-interval",
            "timeout": "--health-timeout",
            "start_period": "--health-start-period",
        }
        for key, flag in options.items():
            if key in check:
                flags += [flag, f"{duration(check[key])}s"]
        if "retries" in check:
            flags += ["--health-retries", str(check["retries"])]
        # start_interval has no podman 4.3 flag; the test polls at its own pace (wait_healthy).
        return flags

    def healthy(self, container: Container) -> bool:
        """Run the container's compose health check now; True when it passes."""
        return podman.podman("healthcheck", "run", container.name, check=False).returncode == 0

    def wait_healthy(self, containers: list[Container], timeout: float) -> None:
        """Until each container's health check passes (each without one: until it runs)."""
        deadline = time.monotonic() + timeout
        waiting = list(containers)
        while waiting:
            waiting = [c for c in waiting if not self._ready(c)]
            if not waiting:
                return
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {c.name}\n{self.logs(c)}" for c in waiting)
                raise AssertionError(f"not healthy within {timeout} s: {[c.name for c in waiting]}\n{logs}")
            time.sleep(_HEALTH_POLL)  # the poll interval of a condition, not a synchronisation

    def _ready(self, container: Container) -> bool:
        check = self.service(container.service).get("healthcheck")
        if check and not check.get("disable"):
            return self.healthy(container)
        return self.state(container) == "running"

    def state(self, container: Container) -> str:
        result = podman.podman("inspect", "--format", "{{.State.Status}}", container.name, check=False)
        return result.stdout.strip() if result.returncode == 0 else "absent"

    def host_port(self, container: Container, target: int) -> int:
        """The host port podman published for ``target``."""
        output = podman.podman("port", container.name, f"{target}/tcp").stdout.strip().splitlines()[0]
        return int(output.rpartition(":")[2])

    def logs(self, container: Container, tail: int = 60) -> str:
        result = podman.podman("logs", "--tail", str(tail), container.name, check=False)
        return result.stdout + result.stderr

    def down(self) -> None:
        """Remove the containers, the network and the volumes (``compose down -v``); never raises."""
        for container in reversed(self.containers):
            podman.podman("rm", "--force", "--time", "0", container.name, check=False)
        podman.podman("network", "rm", "--force", self.network, check=False)
        for key in self.model.get("volumes", {}):
            podman.podman("volume", "rm", "--force", self.volume(key), check=False)
