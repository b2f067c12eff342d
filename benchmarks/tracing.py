"""The edge's cost of tracing, side by side: today (before tracing existed), off, sampled 1 %, sampled 100 %.

Deliveries per CPU-second of the edge under the same fixed load, the four
edges alternating round by round (the order rotates) on one backbone; the
table reports medians and the ratio to *today*. *today* is the edge of the
commit before tracing was added (``--baseline``; exported with ``git
archive`` and run from it through ``PYTHONPATH``). The traced variants get
their events from an activity service with tracing on (``traceidratio``
sampler at 1 % or 100 % of calls, so its traceparents say which traces are
sampled) and export their spans, like activity's, to an OTLP/HTTP sink in
this process. The *today* and *off* edges get events from the backbone's
activity, tracing off: no traceparent at all, as in production without
tracing.

    python -m benchmarks tracing --quick       # ≤ 3 min on 2 cores
    python -m benchmarks tracing --rounds 5 --json build/tracing.json
    python -m benchmarks tracing --micro       # the fan-out path alone, in process (≤ 2 min)

``--micro`` measures the same four edges without NATS, sockets or load
generators: one worker's hub fed messages directly (``_fanout_driver``), a
fresh process per measurement, alternating. On a machine shared with other
work it is the steadier of the two: it counts only the fan-out's own CPU.

Goal (issue 18): *off* costs nothing measurable, 1 % costs ≤ 5 %.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import uvloop

from benchmarks._publisher import Publisher
from benchmarks._stack import Service, pinned, start_activity
from benchmarks.edge import _pinning
from benchmarks.harness import Harness
from benchmarks.scenarios import settle

ROOT = Path(__file__).resolve().parent.parent
SOURCE_ROOTS = ("libs", "services/acl/src", "services/activity/src", "services/dev/src", "services/edge/src")
VARIANTS = ("today", "off", "1%", "100%")
RATIOS = {"1%": 0.01, "100%": 1.0}


class _SpanSink:
    """Accepts OTLP/HTTP exports and drops them (counting requests): a collector that costs nothing."""

    def __init__(self) -> None:
        self.requests = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                sink.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # the base class's name
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="3 rounds of 3 s steps, 500 clients (≤ 3 min)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 5; quick 3)")
    parser.add_argument("--clients", type=int, default=None, help="streams (default 1000; quick 500)")
    parser.add_argument("--rate", type=float, default=20_000.0, help="offered deliveries/s (default 20,000)")
    parser.add_argument("--step-seconds", type=float, default=None, help="seconds of load per measurement (5; quick 3)")
    parser.add_argument(
        "--baseline", default=None, help="git ref of *today* (default: the parent of the tracing commit)"
    )
    parser.add_argument("--edge-cpus", default="0", help="CPUs of the edge under test ('' for no pinning)")
    parser.add_argument("--load-cpus", default="1", help="CPUs of everything else ('' for no pinning)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--micro", action="store_true", help="the fan-out path alone, in process, alternating")
    parser.add_argument("--events", type=int, default=20_000, help="events per --micro measurement (default 20,000)")
    parser.add_argument("--streams", type=int, default=20, help="streams per event in --micro (default 20)")


def _baseline_ref(given: str | None) -> str:
    if given:
        return given
    added = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%H", "--", "libs/userstream/tracing.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    if not added:
        raise SystemExit("cannot find the commit that added tracing; pass --baseline REF")
    return added[-1] + "^"


def _export(ref: str, into: Path) -> str:
    """The source roots of ``ref`` under ``into``, as a PYTHONPATH (ahead of the installed tree)."""
    archive = subprocess.run(["git", "archive", ref, "libs", "services"], cwd=ROOT, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return ":".join(str(into / root) for root in SOURCE_ROOTS)


def _tracing_env(sink: _SpanSink, ratio: float | None) -> dict[str, str]:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint}
    if ratio is not None:
        env |= {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": str(ratio)}
    return env


async def _measure(
    harness: Harness, variant: str, env: dict[str, str], publisher: Publisher, clients: int, rate: float, seconds: float
) -> dict[str, Any]:
    edge: Service = await asyncio.to_thread(harness.start_edge, "userstream", tag=f"-{variant}", extra_env=env)
    default_publisher = harness.publisher
    harness.publisher = publisher
    try:
        await harness.init_clients(clients)
        connected = await harness.connect(edge, window=500, resume=False)
        if connected["offsets"] != clients:
            raise RuntimeError(f"{variant}: only {connected['offsets']} of {clients} streams opened")
        await harness.step(edge, 2000.0, 1.0, 6.0, 0.005)  # warm-up, not recorded
        await settle(edge)
        step = await harness.step(edge, rate, seconds, 6.0, 0.02)
        per_cpu_second = step.deliveries / step.edge_cpu_seconds if step.edge_cpu_seconds else 0.0
        print(
            f"    {variant:<6} delivered {step.deliveries:>8,} ({'clean' if step.clean else 'NOT CLEAN'})"
            f"  edge cpu {step.edge_cpu_seconds:6.2f} s  {per_cpu_second:>9,.0f} deliveries/CPU-s"
            f"  p99 {step.latency.percentile(0.99) or 0:6.1f} ms  others {step.foreign_cpu:4.0%}",
            flush=True,
        )
        return {
            "variant": variant,
            "deliveries_per_cpu_second": per_cpu_second,
            "clean": step.clean,
            "step": step.to_json(),
        }
    finally:
        harness.publisher = default_publisher
        await harness.drop()
        await asyncio.to_thread(edge.stop)


async def _run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    rounds = args.rounds or (3 if args.quick else 5)
    clients = args.clients or (500 if args.quick else 1000)
    seconds = args.step_seconds or (3.0 if args.quick else 5.0)
    ref = _baseline_ref(args.baseline)
    baseline_dir = root / "baseline"
    baseline_dir.mkdir()
    baseline_path = _export(ref, baseline_dir)
    edge_cpus, load_cpus = _pinning(args)
    harness = Harness(root / "run", edge_cpus=edge_cpus, load_cpus=load_cpus)
    sink = _SpanSink()
    traced: dict[str, Service] = {}
    publishers: list[Publisher] = []
    results: dict[str, Any] = {"baseline": ref, "rounds": rounds, "clients": clients, "rate": args.rate, "runs": []}
    print(f"starting NATS, activity, acl; today = {ref}", flush=True)
    await harness.start(clients)
    try:
        assert harness.publisher is not None
        plain = harness.publisher
        variants: dict[str, tuple[dict[str, str], Publisher]] = {
            "today": ({"PYTHONPATH": baseline_path}, plain),
            "off": ({}, plain),
        }
        for name, ratio in RATIOS.items():
            activity = await asyncio.to_thread(
                start_activity, harness.backbone, f"traced-{ratio}", _tracing_env(sink, ratio)
            )
            traced[name] = activity
            publisher = Publisher(activity.address, harness.population)
            publishers.append(publisher)
            # The edge follows the writer's sampling decision: its own sampler never starts a trace.
            variants[name] = (_tracing_env(sink, None), publisher)
        for index in range(rounds):
            order = VARIANTS[index % len(VARIANTS) :] + VARIANTS[: index % len(VARIANTS)]
            print(f"== round {index + 1}/{rounds}: {', '.join(order)}", flush=True)
            for variant in order:
                env, publisher = variants[variant]
                outcome = await _measure(harness, variant, env, publisher, clients, args.rate, seconds)
                outcome["round"] = index
                results["runs"].append(outcome)
    finally:
        for publisher in publishers:
            await publisher.close()
        for activity in traced.values():
            await asyncio.to_thread(activity.stop)
        await harness.stop()
        sink.stop()
    results["span_exports"] = sink.requests
    results["summary"] = summarize(results["runs"])
    return results


def _micro(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    rounds = args.rounds or (5 if args.quick else 11)
    ref = _baseline_ref(args.baseline)
    baseline_dir = root / "baseline"
    baseline_dir.mkdir()
    baseline_path = _export(ref, baseline_dir)
    sink = _SpanSink()
    # variant → (PYTHONPATH or None, sampled ratio of the events' traceparents, OTLP endpoint)
    variants: dict[str, tuple[str | None, str, str | None]] = {
        "today": (baseline_path, "none", None),
        "off": (None, "none", None),
        "1%": (None, "0.01", sink.endpoint),
        "100%": (None, "1.0", sink.endpoint),
    }
    results: dict[str, Any] = {"mode": "micro", "baseline": ref, "rounds": rounds, "runs": []}
    results |= {"events": args.events, "streams": args.streams}
    print(f"today = {ref}; {args.events:,} events × {args.streams} streams per measurement", flush=True)
    try:
        for index in range(rounds):
            order = VARIANTS[index % len(VARIANTS) :] + VARIANTS[: index % len(VARIANTS)]
            for variant in order:
                pythonpath, ratio, endpoint = variants[variant]
                env = dict(os.environ)
                if pythonpath is not None:
                    env["PYTHONPATH"] = pythonpath
                command = [
                    sys.executable,
                    "-m",
                    "benchmarks._fanout_driver",
                    str(args.events),
                    str(args.streams),
                    ratio,
                ]
                if endpoint is not None:
                    command.append(endpoint)
                done = subprocess.run(
                    pinned(command, args.edge_cpus or None), cwd=ROOT, env=env, check=True, capture_output=True
                )
                outcome = json.loads(done.stdout.decode().strip().splitlines()[-1])
                outcome |= {"variant": variant, "round": index, "clean": True}
                results["runs"].append(outcome)
                print(
                    f"    round {index + 1:>2} {variant:<6} {outcome['deliveries_per_cpu_second']:>11,.0f}"
                    f" deliveries/CPU-s  ({outcome['cpu_seconds']:.3f} CPU-s)",
                    flush=True,
                )
    finally:
        sink.stop()
    results["span_exports"] = sink.requests
    results["summary"] = summarize(results["runs"])
    return results


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per variant: the median deliveries per CPU-second, its ratio to *today*'s median, and the median of the
    per-round ratios (each round's variants ran back to back, so a round's ratio shares its machine's load)."""
    by_round: dict[int, dict[str, float]] = {}
    for run in runs:
        by_round.setdefault(run["round"], {})[run["variant"]] = run["deliveries_per_cpu_second"]
    summary: dict[str, Any] = {}
    today = statistics.median(round_["today"] for round_ in by_round.values() if "today" in round_)
    for variant in VARIANTS:
        values = [round_[variant] for round_ in by_round.values() if variant in round_]
        paired = [
            round_[variant] / round_["today"] for round_ in by_round.values() if {variant, "today"} <= set(round_)
        ]
        summary[variant] = {
            "median_deliveries_per_cpu_second": statistics.median(values),
            "vs_today": statistics.median(values) / today,
            "paired_vs_today": statistics.median(paired),
            "paired_range": [min(paired), max(paired)],
        }
    return summary


def table(summary: dict[str, Any]) -> str:
    lines = [
        "| edge | deliveries per CPU-second (median) | ÷ today's median | per-round ratio to today (median, range) |",
        "|---|---:|---:|---:|",
    ]
    for variant, numbers in summary.items():
        low, high = numbers["paired_range"]
        lines.append(
            f"| {variant} | {numbers['median_deliveries_per_cpu_second']:,.0f} | {numbers['vs_today']:.3f}"
            f" | {numbers['paired_vs_today']:.3f} ({low:.2f}–{high:.2f}) |"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="userstream-bench-tracing-") as directory:
        results = _micro(args, Path(directory)) if args.micro else uvloop.run(_run(args, Path(directory)))
    print(table(results["summary"]), flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    unclean = [run for run in results["runs"] if not run["clean"]]
    return 1 if unclean else 0
