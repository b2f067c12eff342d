"""deploy/prometheus (alert rules) and deploy/grafana (dashboard): valid, tested, and querying real PromQL (issue 18).

The rules are checked and unit-tested with promtool (Debian's `prometheus` package, installed on demand in CI);
the dashboard is checked for the structure Grafana loads and its queries are checked by promtool as PromQL.
That every metric they name exists is checked against the running services in
tests/integration/observability/test_dashboard_metrics.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.deploy.conftest import run
from tests.support.debian import ensure_commands
from tests.support.observability import RULE_TESTS, RULES, dashboard, dashboard_queries

PANEL_TYPES = {"row", "timeseries", "stat", "gauge", "bargauge", "table", "text"}
GRID_WIDTH = 24


def _promtool() -> str:
    ensure_commands({"promtool": "prometheus"})
    found = shutil.which("promtool")
    assert found is not None
    return found


def test_alert_rules_pass_promtool_check() -> None:
    result = run([_promtool(), "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_unit_tests_pass() -> None:
    result = run([_promtool(), "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as the expression of a recording rule."""
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for index, query in enumerate(dashboard_queries()):
        lines += [f"      - record: dashboard:query:{index}", f"        expr: '{query.replace(chr(39), chr(39) * 2)}'"]
    rules = tmp_path / "dashboard.rules.yaml"
    rules.write_text("\n".join(lines) + "\n")
    result = run([_promtool(), "check", "rules", str(rules)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_has_the_structure_grafana_loads() -> None:
    board = dashboard()
    assert board["title"]
    assert board["uid"]
    assert isinstance(board["schemaVersion"], int)
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    occupied: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        assert panel["type"] in PANEL_TYPES, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0
        assert grid["y"] >= 0
        assert grid["w"] > 0
        assert grid["h"] > 0
        assert grid["x"] + grid["w"] <= GRID_WIDTH, panel["title"]
        cells = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        targets = panel["targets"]
        assert targets, panel["title"]
        assert len({target["refId"] for target in targets}) == len(targets)
        for target in targets:
            assert target["expr"].strip(), panel["title"]


@pytest.mark.parametrize(
    "title",
    [
        "Streams open",
        "Deliveries / s",
        "Lag to the socket p50 / p99",
        "Slow-consumer cuts / s",
        "Resyncs",
        "Must-refetch / s",
        "Auth failures / s",
        "acl latency (edge's view) p50 / p99",
        "activity and acl call latency p99",
        "NATS reconnects",
    ],
)
def test_the_dashboard_has_the_panels_an_operator_needs(title: str) -> None:
    assert title in {panel["title"] for panel in dashboard()["panels"]}
