"""Edge benchmarks side by side with the naive baseline: fan-out throughput, latency, idle memory, reconnect storm,
scale-out (and, with ``--with-ingest``, the ingest benchmark) — results as JSON, a markdown table and PNG plots.

One run starts one nats-server, activity and acl (shared by every edge), one
or more load-generator processes, and then, scenario by scenario and round by
round, a fresh edge process of each kind **alternately** (userstream, naive,
userstream with 2 workers, userstream, naive, …) under the same load. The
tables report medians over rounds and the ratios between the edges. With two
or more CPUs the edge under test is pinned to CPU 0 and everything else to
CPU 1 (``--edge-cpus`` / ``--load-cpus``; 2 workers get every CPU).

    python -m benchmarks edge --quick                  # ≤ 2 min: 1 round, fewer idle streams
    python -m benchmarks edge --with-ingest --out docs/benchmarks   # full run (≤ 15 min), as in docs/benchmarks.md
    python -m benchmarks.report docs/benchmarks/edge-full.json      # table and plots again from the JSON
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvloop

from benchmarks import report, scenarios
from benchmarks._stack import set_niceness
from benchmarks.harness import Harness

SCENARIOS = ("throughput", "latency", "idle", "scaleout")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="1 round, short steps, 2,000 idle streams (≤ 2 min)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds of throughput/latency (default 3)")
    parser.add_argument("--storm-rounds", type=int, default=None, help="rounds of idle memory + storm (default 2)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated subset of {SCENARIOS}")
    parser.add_argument("--clients", type=int, default=2000, help="clients of the throughput/latency runs")
    parser.add_argument("--idle-clients", type=int, default=None, help="streams of the idle/storm runs (10,000)")
    parser.add_argument("--step-seconds", type=float, default=None, help="seconds per load step (default 3)")
    parser.add_argument("--edge-cpus", default="0", help="CPUs of the edge under test ('' for no pinning)")
    parser.add_argument("--load-cpus", default="1", help="CPUs of everything else ('' for no pinning)")
    parser.add_argument("--loadgens", type=int, default=1, help="load-generator processes (default 1)")
    parser.add_argument("--nice", type=int, default=0, help="niceness of every benchmark process (negative: root)")
    parser.add_argument(
        "--quiet-wait", type=float, default=0.0, help="before each edge run, wait up to this many s for a quiet machine"
    )
    parser.add_argument("--quiet-limit", type=float, default=0.5, help="cores other work may use to count as quiet")
    parser.add_argument("--with-ingest", action="store_true", help="also run `python -m benchmarks ingest`")
    parser.add_argument("--out", type=Path, default=Path("build/benchmarks"), help="JSON, markdown and plots go here")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR", help="keep NATS data and service logs")


def _config(args: argparse.Namespace) -> scenarios.Config:
    config = scenarios.Config(clients=args.clients)
    if args.quick:
        # A smoke run: one attempt per step, one bisection, fewer idle streams.
        config = replace(
            config,
            idle_clients=2000,
            step_seconds=1.5,
            drain_seconds=3.0,
            latency_seconds=3.0,
            bisections=1,
            confirm_failures=False,
            contended_retries=0,
        )
    if args.idle_clients:
        config = replace(config, idle_clients=args.idle_clients)
    if args.step_seconds:
        config = replace(config, step_seconds=args.step_seconds)
    return replace(config, quiet_wait=args.quiet_wait, quiet_limit=args.quiet_limit)


def _pinning(args: argparse.Namespace) -> tuple[str | None, str | None]:
    if (os.cpu_count() or 1) < 2:
        return None, None
    return (args.edge_cpus or None), (args.load_cpus or None)


def _load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


async def _run(args: argparse.Namespace, root: Path, results: dict[str, Any]) -> None:
    config = _config(args)
    rounds = args.rounds or (1 if args.quick else 3)
    storm_rounds = args.storm_rounds or (1 if args.quick else 2)
    chosen = set(args.scenarios.split(","))
    edge_cpus, load_cpus = _pinning(args)
    if args.nice:
        set_niceness(args.nice)
    harness = Harness(root, edge_cpus=edge_cpus, load_cpus=load_cpus, loadgens=args.loadgens)
    users = max(config.clients, config.idle_clients if "idle" in chosen else 0)
    print(f"starting NATS, activity, acl; seeding {users:,} users' memberships", flush=True)
    results["seed_seconds"] = await harness.start(users)
    began = time.monotonic()
    try:
        if chosen & {"throughput", "scaleout"}:
            for index in range(rounds):
                print(f"== throughput, round {index + 1}/{rounds}  (+{time.monotonic() - began:.0f} s)", flush=True)
                runs = [("userstream", 1), ("naive", 1)]
                if "scaleout" in chosen:
                    runs.append(("userstream", 2))
                for kind, workers in runs:
                    if kind == "naive" and "throughput" not in chosen:
                        continue
                    outcome = await scenarios.throughput(harness, kind, config, workers)
                    outcome["round"] = index
                    outcome["load_average"] = _load_average()
                    results["throughput"].append(outcome)
        if "latency" in chosen:
            best = report.median_max(results["throughput"], "userstream", 1)
            rate = 0.1 * best if best else 10_000.0
            for index in range(rounds):
                print(
                    f"== latency at {rate:,.0f} deliveries/s (10% of userstream's best), round {index + 1}"
                    f"  (+{time.monotonic() - began:.0f} s)",
                    flush=True,
                )
                for kind in ("userstream", "naive"):
                    outcome = await scenarios.latency(harness, kind, config, rate)
                    outcome["round"] = index
                    outcome["load_average"] = _load_average()
                    results["latency"].append(outcome)
        if "idle" in chosen:
            for index in range(storm_rounds):
                print(
                    f"== idle memory and reconnect storm, {config.idle_clients:,} streams, round {index + 1}"
                    f"  (+{time.monotonic() - began:.0f} s)",
                    flush=True,
                )
                for kind in ("userstream", "naive"):
                    outcome = await scenarios.idle_storm(harness, kind, config)
                    outcome["round"] = index
                    outcome["load_average"] = _load_average()
                    results["idle_storm"].append(outcome)
    finally:
        await harness.stop()


def _ingest(args: argparse.Namespace, out: Path) -> dict[str, Any] | None:
    path = out / f"ingest-{'quick' if args.quick else 'full'}.json"
    command = [sys.executable, "-m", "benchmarks", "ingest", "--json", str(path), *(["--quick"] if args.quick else [])]
    print("== ingest: " + " ".join(command[1:]), flush=True)
    finished = subprocess.run(command, check=False, cwd=Path(__file__).resolve().parent.parent)
    if finished.returncode != 0 or not path.exists():
        print(f"   ingest failed ({finished.returncode})", flush=True)
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def main(args: argparse.Namespace) -> int:
    mode = "quick" if args.quick else "full"
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    config = _config(args)
    results: dict[str, Any] = {
        "benchmark": "edge",
        "mode": mode,
        "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config.__dict__ | {"p99_limit_ms": scenarios.P99_LIMIT_MS, "loadgens": args.loadgens},
        "pinning": dict(zip(("edge_cpus", "load_cpus"), _pinning(args), strict=True)) | {"nice": args.nice},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": _processor(),
            "load_average_at_start": _load_average(),
        },
        "throughput": [],
        "latency": [],
        "idle_storm": [],
        "ingest": None,
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="userstream-edge-bench-") as scratch:
        root = args.keep or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        try:
            uvloop.run(_run(args, root, results))
        finally:
            results["seconds"] = time.monotonic() - started
            results["machine"]["load_average_at_end"] = _load_average()
            path = out / f"edge-{mode}.json"
            path.write_text(json.dumps(results, indent=1) + "\n")
    if args.with_ingest:
        results["ingest"] = _ingest(args, out)
        results["seconds"] = time.monotonic() - started
        (out / f"edge-{mode}.json").write_text(json.dumps(results, indent=1) + "\n")
    table = report.render(results, out)
    print(table)
    print(f"\nresults: {out / f'edge-{mode}.json'}  table: {out / f'edge-{mode}.md'}  plots: {out}/*.png")
    return 0


def _processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
