"""Edge catch-up bound: the edge's memory and responsiveness while one client resumes over a long backlog.

nats-server, activity, acl and ``userstream edge`` run as their own processes
(``_stack``). A backlog of ``--events`` events of one organization is stored
straight into the log (pipelined publishes, ``_backlog.fill``); a member of it
resumes from before the backlog, reads 100 events, stops reading for
``--stall`` seconds, then reads to the end, while a second user's stream (the
witness) is open on the same edge with pings every 0.25 s. Reported: the
edge's RSS before and at its peak (sampled every 50 ms from /proc), the
longest gap between the witness's pings, and how long an event recorded for
the witness during the catch-up took to reach it (issue 19).

    python -m benchmarks catchup-bound             # 500,000 events
    python -m benchmarks catchup-bound --quick     # 60,000 events
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

from benchmarks._backlog import ResumeMeasurement, fill, measure_resume
from benchmarks._stack import SECRET, Backbone, start_edge
from tests.support.sse import SSEStream, open_stream
from userstream.events import ActivityInput
from userstream.rpc.acl import AclClient
from userstream.rpc.activity import ActivityClient
from userstream.tokens import issue_token

_PING_INTERVAL = "0.25"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="60,000 events (smoke check)")
    parser.add_argument("--events", type=int, default=None, help="events in the backlog (default 500,000)")
    parser.add_argument("--stall", type=float, default=3.0, help="seconds the resuming client stops reading")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the numbers as JSON")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR", help="keep NATS data and logs in DIR")


async def _run(backbone: Backbone, edge_address: str, edge_pid: int, events: int, stall: float) -> ResumeMeasurement:
    acl = AclClient(backbone.acl.address, timeout=10)
    activity = ActivityClient(backbone.activity.address, timeout=10)
    base_url = f"http://{edge_address}"
    try:
        await acl.grant_membership("reader", "big", "member")
        await acl.grant_membership("watcher", "small", "member")
        start = await activity.get_cursor()
        await fill(backbone.nats.url, "ACTIVITY", "big", events)

        def auth(user: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {issue_token(user, SECRET, 3600)}"}

        async def open_resume() -> SSEStream:
            return await open_stream(base_url, headers={"Last-Event-ID": start, **auth("reader")})

        async def open_witness() -> SSEStream:
            return await open_stream(base_url, headers=auth("watcher"))

        async def record_for_witness() -> object:
            return await activity.record(ActivityInput(type="page.updated", organization_id="small", entity_id="w"))

        return await measure_resume(
            edge_pid=edge_pid,
            open_resume=open_resume,
            open_witness=open_witness,
            record_for_witness=record_for_witness,
            events=events,
            stall_seconds=stall,
            read_timeout=120.0,
        )
    finally:
        await acl.close()
        await activity.close()


def main(args: argparse.Namespace) -> int:
    events = args.events or (60_000 if args.quick else 500_000)
    with tempfile.TemporaryDirectory(prefix="userstream-catchup-") as scratch:
        root = args.keep or Path(scratch)
        backbone = Backbone(root, None)
        backbone.start()
        try:
            edge = start_edge("userstream", backbone, None, settings={"PING_INTERVAL": _PING_INTERVAL})
            try:
                result = asyncio.run(_run(backbone, edge.address, edge.pid, events, args.stall))
            finally:
                edge.stop()
        finally:
            backbone.stop()
    print(f"resume over {result.events:,} events (client stalled {args.stall:g} s after 100, then reading to the end)")
    print(f"  edge RSS        {result.baseline_kib / 1024:8.1f} MiB before, {result.peak_kib / 1024:8.1f} MiB peak")
    print(f"  growth          {result.growth_kib / 1024:8.1f} MiB")
    print(f"  delivered       {result.delivered:,} events in {result.seconds:.1f} s")
    print(f"  witness         longest ping gap {result.max_ping_gap:.2f} s (interval {_PING_INTERVAL} s), ", end="")
    print(f"event during the catch-up after {result.witness_event_latency * 1000:.0f} ms")
    if args.json:
        numbers = {key: value for key, value in asdict(result).items() if key != "samples"}
        args.json.write_text(json.dumps({**numbers, "growth_kib": result.growth_kib}, indent=2) + "\n")
    return 0 if result.delivered == events else 1
