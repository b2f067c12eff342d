"""Edge drain: SIGTERM-to-exit time of ``userstream edge`` with 2,000 open streams.

nats-server, activity, acl and the edge run as their own processes
(``_stack``). Each run starts the edge, opens the streams (2,000 users,
each a member of one of 50 organizations, so ~2,050 channels), waits until every
one has its ``offset``, then sends SIGTERM and measures:

- ``all closed``: until every client has read ``close`` (shutdown);
- ``exit``: until the process has exited (its status must be 0).

The drain window (USERSTREAM_DRAIN_TIMEOUT, 10 s) bounds both; clients here
read promptly, so the numbers are the edge's own cost of ending its streams.
The machine is shared and noisy: compare medians of several runs.

    python -m benchmarks.edge_drain             # 2,000 streams, 3 runs
    python -m benchmarks.edge_drain --quick     # 2,000 streams, 1 run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._stack import SECRET, Backbone, Service, start_edge
from benchmarks._stream_reader import StreamReader
from userstream.events import ActivityInput
from userstream.rpc.acl import AclClient
from userstream.rpc.activity import ActivityClient
from userstream.tokens import issue_token

ORGANIZATIONS = 50
OPEN_PARALLEL = 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="one run (smoke check)")
    parser.add_argument("--streams", type=int, default=2000, help="open streams when SIGTERM arrives (default 2,000)")
    parser.add_argument("--runs", type=int, default=None, help="runs (default 3, quick 1)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write every number as JSON")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR", help="keep NATS data and logs in DIR")


async def _memberships(backbone: Backbone, users: int) -> None:
    """Each user joins one organization, recorded as membership events (as a CDC feed would)."""
    client = ActivityClient(backbone.activity.address, timeout=30)
    try:
        for first in range(0, users, 500):
            await client.record_many(
                [
                    ActivityInput(
                        type="membership.created",
                        user_id=f"u{index}",
                        organization_id=f"o{index % ORGANIZATIONS}",
                        role="member",
                    )
                    for index in range(first, min(users, first + 500))
                ]
            )
    finally:
        await client.close()
    acl = AclClient(backbone.acl.address)
    try:
        last = f"u{users - 1}"
        deadline = time.monotonic() + 30
        while not (await acl.get_subject(last)).memberships:
            if time.monotonic() > deadline:
                raise TimeoutError("acl did not apply the memberships")
            await asyncio.sleep(0.1)
    finally:
        await acl.close()


async def _open_all(edge: Service, users: int) -> list[StreamReader]:
    streams: list[StreamReader] = []

    async def open_one(index: int) -> StreamReader:
        headers = {"Authorization": f"Bearer {issue_token(f'u{index}', SECRET, 3600)}"}
        stream = await StreamReader.open(edge.address, "/me/stream", headers)
        await stream.until(b"offset")
        return stream

    for first in range(0, users, OPEN_PARALLEL):
        streams += await asyncio.gather(*(open_one(i) for i in range(first, min(users, first + OPEN_PARALLEL))))
    return streams


async def _closed(stream: StreamReader) -> int:
    """Read until the `close` event; returns the jittered retry the edge sent with it."""
    data = await stream.until(b"close", timeout=60)
    stream.close()
    if data != b'{"reason":"shutdown"}':
        raise RuntimeError(f"unexpected close: {data[:200]!r}")
    return stream.retry if stream.retry is not None else -1


async def _run(edge: Service, users: int) -> dict[str, Any]:
    started = time.perf_counter()
    streams = await _open_all(edge, users)
    opened = time.perf_counter() - started
    signalled = time.perf_counter()
    edge.process.send_signal(signal.SIGTERM)
    closing = asyncio.gather(*(_closed(stream) for stream in streams))
    exiting = asyncio.get_running_loop().run_in_executor(None, edge.process.wait)
    retries = await closing
    all_closed = time.perf_counter() - signalled
    status = await exiting
    exited = time.perf_counter() - signalled
    return {
        "streams": users,
        "open_seconds": opened,
        "all_closed_seconds": all_closed,
        "exit_seconds": exited,
        "exit_status": status,
        "retry_ms_min": min(retries),
        "retry_ms_max": max(retries),
    }


def main(args: argparse.Namespace) -> int:
    runs = args.runs or (1 if args.quick else 3)
    users = args.streams
    print(f"edge drain: SIGTERM with {users:,} open streams, {runs} run(s)")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-edge-drain-") as temporary:
        root = args.keep or Path(temporary)
        root.mkdir(parents=True, exist_ok=True)
        backbone = Backbone(root, cpus=None)
        try:
            backbone.start()
            asyncio.run(_memberships(backbone, users))
            for run in range(runs):
                edge = start_edge("userstream", backbone, None, tag=str(run))
                try:
                    result = asyncio.run(_run(edge, users))
                finally:
                    edge.stop()
                results.append(result)
                print(
                    f"  run {run + 1}: opened in {result['open_seconds']:.1f} s; after SIGTERM all closed in "
                    f"{result['all_closed_seconds']:.3f} s, exit {result['exit_status']} in "
                    f"{result['exit_seconds']:.3f} s (retry {result['retry_ms_min']}..{result['retry_ms_max']} ms)",
                    flush=True,
                )
        finally:
            backbone.stop()
    closed = statistics.median(r["all_closed_seconds"] for r in results)
    exited = statistics.median(r["exit_seconds"] for r in results)
    print()
    print(f"median over {runs} run(s): all {users:,} streams closed {closed:.3f} s, process exited {exited:.3f} s")
    failed = any(r["exit_status"] != 0 for r in results)
    if args.json:
        args.json.write_text(json.dumps({"runs": results}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
