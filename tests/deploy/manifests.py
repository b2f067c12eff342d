"""Reading rendered manifests, compose models and NATS configurations in the deploy tests."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

WORKLOAD_KINDS = ("Deployment", "StatefulSet")
_GENERATED_SUFFIX = re.compile(r"-[a-z0-9]{10}$")
_QUANTITY = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>[A-Za-z]*)$")
_UNITS = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    # The Go runtime's GOMEMLIMIT and nats-server write the binary units this way.
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}
_DURATION = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>ms|s|m|h)")
_DURATION_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity (``512Mi``, ``500m``, ``2``) or a Go byte size (``900MiB``) as a number."""
    match = _QUANTITY.match(str(value))
    assert match, f"not a quantity: {value!r}"
    assert match["unit"] in _UNITS, f"unknown unit in {value!r}"
    return float(match["number"]) * _UNITS[match["unit"]]


def duration(value: str | int | float) -> float:
    """Seconds in a Go/compose duration (``1m30s``, ``45s``) or a plain number of seconds."""
    text = str(value)
    if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", text):
        return float(text)
    parts = list(_DURATION.finditer(text))
    assert parts, f"not a duration: {value!r}"
    assert "".join(part[0] for part in parts) == text, f"not a duration: {value!r}"
    return sum(float(part["number"]) * _DURATION_UNITS[part["unit"]] for part in parts)


def base_name(name: str) -> str:
    """The name a generator was given, without the content hash kustomize appends."""
    return _GENERATED_SUFFIX.sub("", name)


@dataclass(frozen=True)
class Manifests:
    """The objects of one rendered overlay."""

    objects: tuple[dict[str, Any], ...]

    @classmethod
    def parse(cls, text: str) -> Manifests:
        return cls(tuple(doc for doc in yaml.safe_load_all(text) if doc))

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        """The object of that kind named ``name`` (a generated one also by its name before the hash)."""
        exact = [obj for obj in self.of_kind(kind) if obj["metadata"]["name"] == name]
        generated = [obj for obj in self.of_kind(kind) if base_name(obj["metadata"]["name"]) == name]
        found = exact or generated
        assert len(found) <= 1, f"several {kind} named {name}"
        return found[0] if found else None

    def get(self, kind: str, name: str) -> dict[str, Any]:
        obj = self.find(kind, name)
        assert obj is not None, f"no {kind} {name} in the rendered overlay"
        return obj

    def workloads(self) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] in WORKLOAD_KINDS]

    def environment(self, container: Mapping[str, Any]) -> dict[str, str]:
        """A container's literal environment: its ConfigMaps (envFrom), then its own ``value`` entries."""
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                env.update(self.get("ConfigMap", source["configMapRef"]["name"])["data"])
        for entry in container.get("env", []):
            if "value" in entry:
                env[entry["name"]] = entry["value"]
        return env


def pod_spec(workload: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Mapping[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = pod_spec(workload)["containers"]
    return found


def only_container(workload: Mapping[str, Any]) -> dict[str, Any]:
    (container,) = containers(workload)
    return container


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def probes(container: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        if kind in container:
            yield kind, container[kind]


@dataclass(frozen=True)
class NatsConfig:
    """The few settings of a nats-server configuration file that the tests reason about.

    ``nats-server -t`` checks the whole file; this only reads top-level-looking
    ``key: value`` lines (the keys used here are unique in our files) and the routes.
    """

    values: dict[str, str]
    routes: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, env: Mapping[str, str] | None = None) -> NatsConfig:
        values: dict[str, str] = {}
        for line in text.splitlines():
            match = re.match(r"^\s*([a-z_]+)\s*[:=]\s*([^\s#{\[]+)\s*(?:#.*)?$", line)
            if match:
                key, value = match.groups()
                if value.startswith("$") and env is not None:
                    value = env[value[1:]]
                values.setdefault(key, value)
        routes_block = re.search(r"routes\s*[:=]\s*\[(.*?)\]", text, re.DOTALL)
        routes = tuple(re.findall(r"nats://[^\s,\]]+", routes_block[1])) if routes_block else ()
        return cls(values, routes)

    def seconds(self, key: str) -> float:
        return duration(self.values[key])
