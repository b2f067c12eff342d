"""``python -m benchmarks [SCENARIO] [options]``: run one benchmark scenario, or every one.

Each scenario is a module of this package with ``add_arguments(parser)`` and
``main(args) -> int`` (0 when it ran cleanly); register it in SCENARIOS below.
Every scenario accepts ``--quick`` (a short smoke run: what ``make bench``
runs) and ``--json PATH``. Only the chosen scenario's module is imported.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

# scenario → (module, one-line description)
SCENARIOS: dict[str, tuple[str, str]] = {
    "ingest": ("benchmarks.ingest", "activity write path: RecordActivities events/s, RecordActivity calls/s, latency"),
    "edge": (
        "benchmarks.edge",
        "edge vs naive edge: fan-out throughput, latency, idle memory, reconnect storm, scale-out; JSON, table, plots",
    ),
    "edge-resume": ("benchmarks.edge_resume", "edge replay rate to one resuming client (Last-Event-ID), events/s"),
    "catchup-bound": (
        "benchmarks.catchup_bound",
        "edge memory and loop responsiveness while one client resumes over a long backlog (issue 19)",
    ),
    "edge-drain": ("benchmarks.edge_drain", "edge SIGTERM-to-exit time with 2,000 open streams"),
    "auth-storm": (
        "benchmarks.auth_storm",
        "reconnect storm to a fresh edge with HS256 tokens, RS256 tokens from a JWKS, a session hook: streams/s",
    ),
    "grpc-floor": ("benchmarks.grpc_floor", "grpcio's Python server per no-op call: aio, aio+uvloop, sync pools"),
    "outbox": (
        "benchmarks.outbox",
        "outbox relay: rows/s and commit → first byte p50/p99, beside RecordActivities in the same run",
    ),
    "acl": ("benchmarks.acl", "acl: GetSubject (latest, now) and CheckAccess calls/s, paced latency, CPU per call"),
    "tracing": ("benchmarks.tracing", "edge deliveries per CPU-second: today vs tracing off, sampled 1 %, 100 %"),
}


def _scenario_parser(name: str) -> tuple[argparse.ArgumentParser, ModuleType]:
    module_name, help_text = SCENARIOS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks {name}", description=help_text)
    module.add_arguments(parser)
    return parser, module


def _top_parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:<12} {help_text}" for name, (_, help_text) in SCENARIOS.items())
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run one benchmark scenario (`python -m benchmarks SCENARIO --help`), or all of them.",
        epilog=f"scenarios:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="run every scenario in quick mode")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in SCENARIOS:
        parser, module = _scenario_parser(arguments[0])
        status: int = module.main(parser.parse_args(arguments[1:]))
        return status
    top = _top_parser().parse_args(arguments)
    worst = 0
    for name in SCENARIOS:
        print(f"== {name} ==", flush=True)
        parser, module = _scenario_parser(name)
        worst = max(worst, module.main(parser.parse_args(["--quick"] if top.quick else [])))
    return worst


if __name__ == "__main__":
    sys.exit(main())
