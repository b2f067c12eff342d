"""Where an idle stream's memory goes: the edge in this process under tracemalloc, the clients elsewhere.

    python -m benchmarks.memory_edge --clients 2000

Starts NATS, activity and acl as processes and the load generator as its own
process (as ``python -m benchmarks edge`` does), but runs the userstream edge
*in this process* so ``tracemalloc`` can compare the Python heap before and
after the streams open. Prints the bytes per open stream, grouped by the file
that allocated them (uvicorn, Litestar, the edge, asyncio, …). tracemalloc
counts Python allocations only: the RSS per stream that ``python -m benchmarks
edge`` reports also includes allocator overhead and C-level buffers.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import tracemalloc
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import uvicorn
import uvloop

from benchmarks._stack import SECRET, rss_kb
from benchmarks.harness import Harness
from userstream.edge.app import create_app
from userstream.edge.settings import EdgeSettings
from userstream.settings import Env

_GROUPS = (
    ("userstream/edge", "services/edge/src/userstream/edge/"),
    ("userstream (libs)", "libs/userstream/"),
    ("uvicorn", "uvicorn/"),
    ("litestar", "litestar/"),
    ("asyncio", "asyncio/"),
    ("nats-py", "nats/"),
    ("grpc", "grpc/"),
    ("structlog", "structlog/"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=2000, help="idle streams to open")
    parser.add_argument("--window", type=int, default=500, help="connects in flight")
    parser.add_argument("--top", type=int, default=15, help="allocation sites to list")


@dataclass
class _InProcessEdge:
    """What the harness needs of an edge: its address, and CPU figures it may ask for."""

    address: str

    def cpu(self) -> float:
        return 0.0


def _group(filename: str) -> str:
    for name, marker in _GROUPS:
        if marker in filename:
            return name
    return "other (" + filename.rsplit("/", 2)[-2] + ")" if "/" in filename else filename


async def _run(args: argparse.Namespace, root: Path) -> str:
    harness = Harness(root, edge_cpus=None, load_cpus=None)
    await harness.start(args.clients)
    backbone = harness.backbone
    env = Env(
        {
            "USERSTREAM_NATS_URL": backbone.nats.url,
            "USERSTREAM_ACL_ADDR": backbone.acl.address,
            "USERSTREAM_JWT_SECRET": SECRET,
            "USERSTREAM_LOG_LEVEL": "warning",
        }
    )
    app = create_app(EdgeSettings.load(port=0, env=env), owns_process=False)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, loop="none", http="httptools", lifespan="on", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    serving = asyncio.get_running_loop().create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110  # uvicorn offers no event for it
            await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        runtime = app.app.state.runtime
        while not runtime.ready:  # noqa: ASYNC110  # a property, not an event
            await asyncio.sleep(0.05)
        await harness.init_clients(args.clients)
        gc.collect()
        tracemalloc.start(1)
        before = tracemalloc.take_snapshot()
        rss_before = rss_kb([_self()])
        connected = await harness.connect(_InProcessEdge(f"127.0.0.1:{port}"), window=args.window, resume=False)  # type: ignore[arg-type]
        await asyncio.sleep(2.0)
        gc.collect()
        after = tracemalloc.take_snapshot()
        rss_after = rss_kb([_self()])
        tracemalloc.stop()
        streams = connected["offsets"]
        return _report(before, after, streams, rss_before, rss_after, args.top)
    finally:
        await harness.drop()
        await runtime.drain()
        server.should_exit = True
        await asyncio.wait_for(serving, 15)
        await harness.stop()


def _self() -> int:
    import os

    return os.getpid()


def _report(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, streams: int, rss_before: int, rss_after: int, top: int
) -> str:
    per_group: Counter[str] = Counter()
    per_line: Counter[str] = Counter()
    for stat in after.compare_to(before, "lineno"):
        frame = stat.traceback[0]
        per_group[_group(frame.filename)] += stat.size_diff
        per_line[f"{frame.filename.split('site-packages/')[-1].split('/work/main/')[-1]}:{frame.lineno}"] += (
            stat.size_diff
        )
    total = sum(per_group.values())
    lines = [
        f"{streams:,} idle streams: Python heap +{total / 1024 / 1024:.1f} MiB"
        f" = {total / max(1, streams) / 1024:.1f} KB"
        f" per stream (RSS of this process with tracemalloc on: +{(rss_after - rss_before) / max(1, streams):.1f} KB)",
        "",
        "by package (KB per stream):",
    ]
    lines += [f"  {size / max(1, streams) / 1024:7.2f}  {group}" for group, size in per_group.most_common() if size > 0]
    lines += ["", f"top {top} allocation sites (KB per stream):"]
    lines += [f"  {size / max(1, streams) / 1024:7.2f}  {line}" for line, size in per_line.most_common(top)]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="userstream-memory-") as scratch:
        print(uvloop.run(_run(args, Path(scratch))))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
