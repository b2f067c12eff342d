"""The operator-facing observability files in deploy/: alert rules and the Grafana dashboard, and their queries."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "userstream.rules.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "userstream.rules.test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "userstream.json"

# Series names in PromQL: the project's own metrics (recording rules, with a colon, excluded).
_METRIC = re.compile(r"\buserstream_[a-z0-9_]+\b")
# Grafana's range variables, which Prometheus does not know.
_GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_queries() -> list[str]:
    """Every target's expression, Grafana's variables replaced by durations Prometheus accepts."""
    queries = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in _GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            queries.append(expr)
    return queries


def rule_queries() -> list[str]:
    """Every rule's expression (the rule file is YAML, but its `expr:` lines are single-line by convention)."""
    return [line.split("expr:", 1)[1].strip() for line in RULES.read_text().splitlines() if "expr:" in line]


def metric_names(expression: str) -> set[str]:
    return set(_METRIC.findall(expression))


def exposed_series(metrics_text: str) -> set[str]:
    """The series names a Prometheus text exposition can produce, from its ``# TYPE`` lines (samples or not)."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created")}
    names: set[str] = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            names.update(name + suffix for suffix in suffixes.get(kind, ()))
    return names
