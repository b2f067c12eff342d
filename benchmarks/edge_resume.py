"""Edge resume: how fast a reconnecting client is replayed what it missed (target ≥ 20,000 events/s).

nats-server, activity, acl and ``userstream edge`` run as their own processes
(``_stack``); this process records a backlog through activity, then
reconnects one client with ``Last-Event-ID`` and times from the request to the
``offset`` event (everything missed delivered, in order, and checked). Two
backlogs:

- ``all-permitted``: every missed event is in an organization the user belongs to;
- ``mixed``: events spread over three organizations, the user in two of them
  (the edge reads only the subjects the user has: two channels merged in order).

Each backlog is replayed several times; the table shows medians and ranges of
the wall-clock rate, and the rate per CPU second the edge process spent (read
from /proc): on a shared, loaded machine the wall clock measures the
neighbours as much as the edge, the CPU rate much less so. Compare medians of
several runs.

    python -m benchmarks.edge_resume            # 50,000 events, 5 runs per backlog
    python -m benchmarks.edge_resume --quick    # 10,000 events, 2 runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._stack import SECRET, Backbone, Service, start_edge
from benchmarks._stream_reader import StreamReader
from userstream.errors import UnavailableError
from userstream.events import ActivityInput
from userstream.rpc.acl import AclClient
from userstream.rpc.activity import ActivityClient
from userstream.tokens import issue_token

TARGET_EVENTS_PER_S = 20_000
USER = "resumer"
BATCH = 500
_TEXT = "x" * 180  # with the envelope, ~300-byte events like the ingest benchmark


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="10,000 events, 2 runs (smoke check)")
    parser.add_argument("--events", type=int, default=None, help="events in each backlog (default 50,000)")
    parser.add_argument("--runs", type=int, default=None, help="replays of each backlog (default 5)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write every number as JSON")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR", help="keep NATS data and logs in DIR")


@dataclass
class Stack:
    backbone: Backbone
    edge: Service


async def _record(stack: Stack, organizations: tuple[str, ...], count: int, permitted: set[str]) -> int:
    """Record ``count`` events round-robin over ``organizations``; returns how many the user may see."""
    client = ActivityClient(stack.backbone.activity.address, timeout=30)
    visible = 0
    prefix = f"{organizations[-1]}-{time.time_ns()}"
    try:
        for first in range(0, count, BATCH):
            batch = [
                ActivityInput(
                    type="page.updated",
                    organization_id=organizations[index % len(organizations)],
                    entity_id=f"page-{index % 1000}",
                    data_json='{"rev":' + str(index) + ',"text":"' + _TEXT + '"}',
                    changed_keys=("text",),
                    idempotency_key=f"{prefix}-{index}",
                )
                for index in range(first, min(count, first + BATCH))
            ]
            for attempt in range(5):
                try:
                    await client.record_many(batch)
                    break
                except UnavailableError:
                    # A shared, loaded machine: NATS may ack late. Keys make the retry safe.
                    if attempt == 4:
                        raise
                    await asyncio.sleep(1)
            visible += sum(1 for activity in batch if activity.organization_id in permitted)
    finally:
        await client.close()
    return visible


async def _head(stack: Stack) -> str:
    client = ActivityClient(stack.backbone.activity.address)
    try:
        return await client.get_cursor()
    finally:
        await client.close()


async def _replay(stack: Stack, cursor: str, expected: int) -> tuple[float, int]:
    """One resume: seconds from the request to the offset event, and the events replayed."""
    headers = {"Authorization": f"Bearer {issue_token(USER, SECRET, 3600)}", "Last-Event-ID": cursor}
    started = time.perf_counter()
    stream = await StreamReader.open(stack.edge.address, "/me/stream", headers)
    try:
        offset = await stream.until(b"offset")
        elapsed = time.perf_counter() - started
    finally:
        stream.close()
    if b'"resumed":true' not in offset:
        raise RuntimeError(f"unexpected offset event: {offset[:200]!r}")
    ids = stream.ids
    if len(ids) != expected or ids != sorted(ids) or len(set(ids)) != len(ids):
        raise RuntimeError(f"replayed {len(ids)} events, expected {expected} distinct in order")
    return elapsed, len(ids)


async def _measure(stack: Stack, events: int, runs: int) -> dict[str, Any]:
    acl = AclClient(stack.backbone.acl.address)
    try:
        await acl.grant_membership(USER, "acme", "member")
        await acl.grant_membership(USER, "globex", "member")
    finally:
        await acl.close()
    results: dict[str, Any] = {}
    for name, organizations in (("all-permitted", ("acme",)), ("mixed", ("acme", "globex", "initech"))):
        cursor = await _head(stack)
        visible = await _record(stack, organizations, events, {"acme", "globex"})
        await _replay(stack, cursor, visible)  # warm-up: connections, the edge's first reads
        times, cpu_times = [], []
        for _ in range(runs):
            cpu_before = stack.edge.cpu()
            elapsed, count = await _replay(stack, cursor, visible)
            cpu = max(stack.edge.cpu() - cpu_before, 1e-3)
            times.append(elapsed)
            cpu_times.append(cpu)
            print(
                f"  {name:14} {count:>7} events in {elapsed:6.3f} s = {count / elapsed:>9,.0f} events/s"
                f"  (edge CPU {cpu:5.2f} s = {count / cpu:>9,.0f} events per CPU second)",
                flush=True,
            )
        rates = [visible / elapsed for elapsed in times]
        results[name] = {
            "events_recorded": events,
            "events_replayed": visible,
            "seconds": times,
            "events_per_s_median": statistics.median(rates),
            "events_per_s_min": min(rates),
            "events_per_s_max": max(rates),
            "edge_cpu_seconds": cpu_times,
            "events_per_edge_cpu_s_median": statistics.median(visible / cpu for cpu in cpu_times),
        }
    return results


def main(args: argparse.Namespace) -> int:
    events = args.events or (10_000 if args.quick else 50_000)
    runs = args.runs or (2 if args.quick else 5)
    print(f"edge resume: backlogs of {events:,} events, {runs} replays each (target ≥ {TARGET_EVENTS_PER_S:,}/s)")
    with tempfile.TemporaryDirectory(prefix="bench-edge-resume-") as temporary:
        root = args.keep or Path(temporary)
        root.mkdir(parents=True, exist_ok=True)
        backbone = Backbone(root, cpus=None)
        try:
            backbone.start()
            edge = start_edge("userstream", backbone, None)
            try:
                results = asyncio.run(_measure(Stack(backbone, edge), events, runs))
            finally:
                edge.stop()
        finally:
            backbone.stop()
    print()
    print(f"{'backlog':14} {'replayed':>9} {'median events/s':>16} {'range':>24} {'per edge CPU s':>15}")
    missed = []
    for name, result in results.items():
        low, high = result["events_per_s_min"], result["events_per_s_max"]
        median = result["events_per_s_median"]
        per_cpu = result["events_per_edge_cpu_s_median"]
        print(
            f"{name:14} {result['events_replayed']:>9,} {median:>16,.0f} {low:>11,.0f} .. {high:>10,.0f}"
            f" {per_cpu:>15,.0f}"
        )
        if median < TARGET_EVENTS_PER_S:
            missed.append(name)
    print(
        f"target ≥ {TARGET_EVENTS_PER_S:,} events/s (median): {'NOT met by ' + ', '.join(missed) if missed else 'met'}"
    )
    if args.json:
        args.json.write_text(json.dumps({"target_events_per_s": TARGET_EVENTS_PER_S, "backlogs": results}, indent=2))
    return 0  # ran cleanly (every replay complete and in order); the numbers are for people


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
