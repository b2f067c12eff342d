"""Tables and plots from an edge benchmark's JSON: the targets of issue 8, medians over rounds, ratios.

    python -m benchmarks.report docs/benchmarks/edge-full.json [--out DIR]

writes ``edge-<mode>.md`` (the markdown table) and ``throughput.png``,
``latency-cdf.png``, ``latency-vs-load.png`` beside the JSON (or in ``--out``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks._histogram import Histogram

TARGET_DELIVERIES = 100_000
TARGET_RATIO = 5.0
TARGET_P50_MS = 5.0
TARGET_P99_MS = 25.0
TARGET_KB_PER_STREAM = 20.0
TARGET_STORM_PER_S = 2000.0
TARGET_INGEST = 20_000
TARGET_SCALE = 1.7
LABELS = {("userstream", 1): "userstream", ("naive", 1): "naive", ("userstream", 2): "userstream ×2 workers"}
COLORS = {("userstream", 1): "tab:blue", ("naive", 1): "tab:red", ("userstream", 2): "tab:green"}


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _runs(results: list[dict[str, Any]], kind: str, workers: int = 1) -> list[dict[str, Any]]:
    return [run for run in results if run["edge"] == kind and run.get("workers", 1) == workers]


def median_max(throughput: list[dict[str, Any]], kind: str, workers: int) -> float:
    return _median([run["max_sustained_per_s"] for run in _runs(throughput, kind, workers)]) or 0.0


def _latency(results: dict[str, Any], kind: str, key: str) -> float | None:
    return _median(
        [run["step"]["latency"][key] for run in _runs(results["latency"], kind) if run["step"]["latency"][key]]
    )


def _storm(results: dict[str, Any], kind: str, path: tuple[str, str]) -> float | None:
    values = [run[path[0]][path[1]] for run in _runs(results["idle_storm"], kind)]
    return _median([value for value in values if value is not None])


def _storm_cell(results: dict[str, Any], kind: str, accepted: float | None, gap_free: bool) -> str:
    runs = _runs(results["idle_storm"], kind)
    resumed = sum(run["storm"]["resumed"] for run in runs)
    clients = sum(run["idle"]["streams"] for run in runs)
    verdict = "gap-free" if gap_free else "**GAPS**"
    return f"{_fmt(accepted, '/s')}; {resumed:,}/{clients:,} resumed, {verdict}"


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or not b:
        return None
    return a / b


def _fmt(value: float | None, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}{unit}"


def _spread(values: list[float], digits: int = 0) -> str:
    if len(values) < 2:
        return ""
    return f" ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def _resumed_gap_free(run: dict[str, Any]) -> bool:
    storm = run["storm"]
    return bool(storm["gap_free"] and storm.get("all_resumed", True))


def _best_step_cost(run: dict[str, Any]) -> float | None:
    """The edge's CPU µs per delivery at the highest load it sustained in this run."""
    sustained = [step for step in run["steps"] if _sustained(step) and step.get("edge_us_per_delivery")]
    if not sustained:
        return None
    cost: float = max(sustained, key=lambda step: step["offered_per_s"])["edge_us_per_delivery"]
    return cost


def summary(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target: the measured value, the naive edge's value from the same run, the verdict."""
    rows: list[dict[str, Any]] = []
    throughput = results["throughput"]
    if _runs(throughput, "userstream"):
        ours = median_max(throughput, "userstream", 1)
        naive = median_max(throughput, "naive", 1) if _runs(throughput, "naive") else None
        ratio = _ratio(ours, naive)
        rows.append(
            {
                "target": "max sustained deliveries/s (p99 ≤ 100 ms, zero loss), 1 worker",
                "goal": f"≥ {TARGET_DELIVERIES:,}/s and ≥ {TARGET_RATIO:g}× naive",
                "userstream": _fmt(ours, "/s")
                + _spread([r["max_sustained_per_s"] for r in _runs(throughput, "userstream")]),
                "naive": _fmt(naive, "/s") + _spread([r["max_sustained_per_s"] for r in _runs(throughput, "naive")]),
                "ratio": _fmt(ratio, "×", 1),
                "met": ours >= TARGET_DELIVERIES and (ratio is None or ratio >= TARGET_RATIO),
            }
        )
        costs = {
            kind: _median([c for c in (_best_step_cost(run) for run in _runs(throughput, kind)) if c is not None])
            for kind in ("userstream", "naive")
        }
        projected = {kind: (1e6 / cost if cost else None) for kind, cost in costs.items()}
        rows.append(
            {
                "target": "(context) edge CPU per delivery at its best sustained load → per dedicated core",
                "goal": "—",
                "userstream": f"{_fmt(costs['userstream'], ' µs', 1)} → {_fmt(projected['userstream'], '/s')}",
                "naive": f"{_fmt(costs['naive'], ' µs', 1)} → {_fmt(projected['naive'], '/s')}",
                "ratio": _fmt(_ratio(costs["naive"], costs["userstream"]), "× less CPU", 1),
                "met": None,
            }
        )
    if results["latency"]:
        rate = results["latency"][0]["rate"]
        for key, goal, label in (("p50_ms", TARGET_P50_MS, "p50"), ("p99_ms", TARGET_P99_MS, "p99")):
            ours_latency = _latency(results, "userstream", key)
            naive_latency = _latency(results, "naive", key)
            rows.append(
                {
                    "target": f"latency {label} at 10% load ({rate:,.0f} deliveries/s)",
                    "goal": f"≤ {goal:g} ms",
                    "userstream": _fmt(ours_latency, " ms", 1),
                    "naive": _fmt(naive_latency, " ms", 1),
                    "ratio": _fmt(_ratio(naive_latency, ours_latency), "× lower", 1),
                    "met": ours_latency is not None and ours_latency <= goal,
                }
            )
    if results["idle_storm"]:
        streams = results["idle_storm"][0]["idle"]["streams"]
        ours_kb = _storm(results, "userstream", ("idle", "kb_per_stream"))
        naive_kb = _storm(results, "naive", ("idle", "kb_per_stream"))
        rows.append(
            {
                "target": f"RSS per idle stream at {streams:,} streams",
                "goal": f"≤ {TARGET_KB_PER_STREAM:g} KB",
                "userstream": _fmt(ours_kb, " KB", 1),
                "naive": _fmt(naive_kb, " KB", 1),
                "ratio": _fmt(_ratio(naive_kb, ours_kb), "× less", 1),
                "met": ours_kb is not None and ours_kb <= TARGET_KB_PER_STREAM,
            }
        )
        ours_storm = _storm(results, "userstream", ("storm", "accepted_per_s"))
        naive_storm = _storm(results, "naive", ("storm", "accepted_per_s"))
        ours_gap_free = all(_resumed_gap_free(run) for run in _runs(results["idle_storm"], "userstream"))
        naive_gap_free = all(_resumed_gap_free(run) for run in _runs(results["idle_storm"], "naive"))
        rows.append(
            {
                "target": f"reconnect storm: {streams:,} clients with Last-Event-ID, streams accepted/s",
                "goal": f"≥ {TARGET_STORM_PER_S:,.0f}/s, all resumed gap-free",
                "userstream": _storm_cell(results, "userstream", ours_storm, ours_gap_free),
                "naive": _storm_cell(results, "naive", naive_storm, naive_gap_free),
                "ratio": _fmt(_ratio(ours_storm, naive_storm), "×", 1),
                "met": ours_storm is not None and ours_storm >= TARGET_STORM_PER_S and ours_gap_free,
            }
        )
    ingest = results.get("ingest")
    if ingest:
        value = ingest["summary"]["batch_events_per_s"]["median"]
        rows.append(
            {
                "target": "ingest: RecordActivities events/s, 1 activity process",
                "goal": f"≥ {TARGET_INGEST:,}/s",
                "userstream": _fmt(value, "/s"),
                "naive": "—",
                "ratio": "—",
                "met": value >= TARGET_INGEST,
            }
        )
    if _runs(throughput, "userstream", 2):
        one = median_max(throughput, "userstream", 1)
        two = median_max(throughput, "userstream", 2)
        scale = _ratio(two, one)
        rows.append(
            {
                "target": "scale-out: max sustained with 2 edge workers vs 1",
                "goal": f"≥ {TARGET_SCALE:g}×",
                "userstream": f"{_fmt(two, '/s')} vs {_fmt(one, '/s')} = {_fmt(scale, '×', 2)}",
                "naive": "—",
                "ratio": _fmt(scale, "×", 2),
                "met": scale is not None and scale >= TARGET_SCALE,
            }
        )
    return rows


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        f"Edge benchmarks ({results['mode']} run, {results['started']}, {results.get('seconds', 0):.0f} s): "
        f"`{results['command']}`",
        "",
        f"Machine: {machine['cpus']} CPUs ({machine['processor']}), Python {machine['python']}, "
        f"load average {machine['load_average_at_start']} at start, {machine.get('load_average_at_end')} at end; "
        f"edge pinned to CPUs {results['pinning']['edge_cpus']}, everything else to {results['pinning']['load_cpus']}"
        f" (niceness of the benchmark's sessions: {results['pinning'].get('nice', 0)}); other work on the machine used"
        f" {_fmt(_others(results), ' cores', 2)} during the load steps (median).",
        "",
        "| target | goal | userstream | naive edge (same run) | ratio | met |",
        "|---|---|---|---|---|---|",
    ]
    lines.extend(
        f"| {row['target']} | {row['goal']} | {row['userstream']} | {row['naive']} | {row['ratio']} | "
        f"{'—' if row['met'] is None else 'yes' if row['met'] else '**no**'} |"
        for row in summary(results)
    )
    lines += ["", "Medians over alternating rounds (range in parentheses).", "", *_round_table(results)]
    return "\n".join(lines) + "\n"


def _others(results: dict[str, Any]) -> float | None:
    steps = [step for run in results["throughput"] for step in run["steps"]]
    steps += [run["step"] for run in results["latency"]]
    return _median([step["foreign_cpu"] for step in steps if "foreign_cpu" in step])


def _round_table(results: dict[str, Any]) -> list[str]:
    lines = ["| round | edge | max sustained/s | steps (offered → delivered, p99, edge CPU) |", "|---|---|---|---|"]
    for run in results["throughput"]:
        steps = ", ".join(
            f"{s['offered_per_s'] / 1000:,.1f}k→{s['delivered_per_s'] / 1000:,.1f}k "
            f"{_fmt(s['latency']['p99_ms'], 'ms')} {s['edge_cpu']:.0%}{'' if _sustained(s) else '✗'}"
            for s in run["steps"]
        )
        label = LABELS[(run["edge"], run.get("workers", 1))]
        lines.append(f"| {run['round'] + 1} | {label} | {run['max_sustained_per_s']:,.0f} | {steps} |")
    return lines


def _sustained(step: dict[str, Any]) -> bool:
    p99 = step["latency"]["p99_ms"]
    clean = step["missing"] == 0 and step["extra"] == 0 and step["foreign"] == 0 and not step["closed"]
    clean = clean and step["publish_errors"] == 0 and step["deliveries"] == step["expected"]
    return clean and p99 is not None and p99 <= 100.0


def plots(results: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[Path] = []
    # Throughput against offered load.
    figure, axes = plt.subplots(figsize=(8, 5.5))
    top = 1.0
    for key, label in LABELS.items():
        runs = _runs(results["throughput"], *key)
        if not runs:
            continue
        color = COLORS[key]
        for index, run in enumerate(runs):
            steps = sorted(run["steps"], key=lambda s: s["offered_per_s"])
            xs = [s["offered_per_s"] for s in steps]
            ys = [s["delivered_per_s"] for s in steps]
            top = max(top, *xs, *ys)
            # The line follows the best attempt at each offered load; every attempt is a marker.
            best_at: dict[float, float] = {}
            for x, y in zip(xs, ys, strict=True):
                best_at[x] = max(best_at.get(x, 0.0), y)
            axes.plot(list(best_at), list(best_at.values()), "-", color=color, alpha=0.35, label=None)
            ok = [(x, y) for x, y, s in zip(xs, ys, steps, strict=True) if _sustained(s)]
            bad = [(x, y) for x, y, s in zip(xs, ys, steps, strict=True) if not _sustained(s)]
            if ok:
                axes.plot(*zip(*ok, strict=True), "o", color=color, label=label if index == 0 else None)
            if bad:
                axes.plot(*zip(*bad, strict=True), "x", color=color, markersize=8)
        best = median_max(results["throughput"], *key)
        if best:
            axes.axvline(best, color=color, linestyle=":", alpha=0.8)
    axes.plot([1e3, top], [1e3, top], "--", color="grey", linewidth=0.8, label="delivered = offered")
    axes.axvline(TARGET_DELIVERIES, color="black", linestyle="-.", linewidth=0.8, label="target 100k/s")
    axes.set_xscale("log")
    axes.set_yscale("log")
    _plain_ticks(axes.xaxis)
    _plain_ticks(axes.yaxis)
    axes.set_xlabel("offered deliveries/s (2,000 clients, 100 orgs, 3 orgs each, ~300-byte events)")
    axes.set_ylabel("delivered deliveries/s")
    axes.set_title(
        "Fan-out throughput, one worker unless stated\n● sustained (all delivered, p99 ≤ 100 ms)  ✕ not; ⋮ median best"
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper left")
    figure.tight_layout()
    path = out / "throughput.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    made.append(path)

    # Latency CDF at 10 % load.
    if results["latency"]:
        figure, axes = plt.subplots(figsize=(8, 5))
        for kind in ("userstream", "naive"):
            runs = _runs(results["latency"], kind)
            if not runs:
                continue
            histogram = Histogram.merged(Histogram.from_json(run["step"]["histogram"]) for run in runs)
            points = histogram.cdf()
            if points:
                latencies, fractions = zip(*points, strict=True)
                axes.step(
                    latencies,
                    fractions,
                    where="post",
                    color=COLORS[(kind, 1)],
                    label=f"{kind} (p50 {histogram.percentile(0.5):.1f} ms, p99 {histogram.percentile(0.99):.1f} ms)",
                )
        axes.axvline(TARGET_P50_MS, color="black", linestyle=":", linewidth=0.8, label="targets p50 5 ms, p99 25 ms")
        axes.axvline(TARGET_P99_MS, color="black", linestyle=":", linewidth=0.8)
        axes.axhline(0.99, color="grey", linestyle="--", linewidth=0.6)
        axes.axhline(0.5, color="grey", linestyle="--", linewidth=0.6)
        axes.set_xscale("log")
        _plain_ticks(axes.xaxis)
        axes.set_xlabel("end-to-end latency, ms (publisher's send → client's receipt; all rounds)")
        axes.set_ylabel("fraction of deliveries")
        axes.set_title(
            f"Latency CDF at 10% of userstream's best load ({results['latency'][0]['rate']:,.0f} deliveries/s)"
        )
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(loc="lower right")
        figure.tight_layout()
        path = out / "latency-cdf.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        made.append(path)

    # p99 against offered load.
    figure, axes = plt.subplots(figsize=(8, 5))
    for key, label in LABELS.items():
        runs = _runs(results["throughput"], *key)
        for index, run in enumerate(runs):
            steps = sorted((s for s in run["steps"] if s["latency"]["p99_ms"]), key=lambda s: s["offered_per_s"])
            axes.plot(
                [s["offered_per_s"] for s in steps],
                [s["latency"]["p99_ms"] for s in steps],
                "o-",
                color=COLORS[key],
                alpha=0.6,
                label=label if index == 0 else None,
            )
    axes.axhline(100, color="black", linestyle="-.", linewidth=0.8, label="p99 limit 100 ms")
    axes.set_xscale("log")
    axes.set_yscale("log")
    _plain_ticks(axes.xaxis)
    _plain_ticks(axes.yaxis)
    axes.set_xlabel("offered deliveries/s")
    axes.set_ylabel("p99 latency, ms")
    axes.set_title("p99 end-to-end latency against offered load")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper left")
    figure.tight_layout()
    path = out / "latency-vs-load.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    made.append(path)
    return made


def _plain_ticks(axis: Any) -> None:
    """Log axes labelled 1, 2, 5, 10, … 20k instead of powers of ten, without minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def render(results: dict[str, Any], out: Path) -> str:
    """Write the markdown table and the plots into ``out``; returns the table."""
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(results)
    (out / f"edge-{results['mode']}.md").write_text(text)
    if results["throughput"] or results["latency"]:
        plots(results, out)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="an edge-<mode>.json written by `python -m benchmarks edge`")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: beside the JSON)")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    print(render(results, args.out or args.results.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
