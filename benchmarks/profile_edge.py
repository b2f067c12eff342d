"""Profile an edge under the benchmark's load with py-spy: where its CPU goes, per delivery or per connect.

    python -m benchmarks.profile_edge fanout --rate 20000 --seconds 15      # fan-out hot path
    python -m benchmarks.profile_edge connect --clients 5000                # connect / resume path
    python -m benchmarks.profile_edge fanout --edge naive                   # the baseline, for comparison

Starts the same stack as ``python -m benchmarks edge`` (NATS, activity, acl, one
edge worker pinned to CPU 0, the load generator on CPU 1), applies the load,
and samples the edge with ``py-spy record --nonblocking`` meanwhile. Writes the
raw folded stacks (``<out>/<edge>-<mode>.folded``, open them with speedscope or
flamegraph.pl) and prints the functions costing most — as a share of the
edge's samples and as CPU microseconds per delivery (fan-out) or per stream
opened (connect), from the edge's measured CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import uvloop

from benchmarks._stack import set_niceness
from benchmarks.harness import Harness
from benchmarks.scenarios import settle


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mode", choices=("fanout", "connect"))
    parser.add_argument("--edge", default="userstream", choices=("userstream", "naive"))
    parser.add_argument("--rate", type=float, default=20_000.0, help="offered deliveries/s (fanout)")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds of load and sampling (fanout)")
    parser.add_argument("--clients", type=int, default=2000, help="streams (fanout: held; connect: opened)")
    parser.add_argument("--window", type=int, default=500, help="connects in flight (connect)")
    parser.add_argument("--nice", type=int, default=0, help="weight of the benchmark's processes (see edge --nice)")
    parser.add_argument("--top", type=int, default=25, help="functions to list")
    parser.add_argument("--out", type=Path, default=Path("build/benchmarks/profiles"))


def _spy(pid: int, seconds: float, path: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [binary, "record", "--nonblocking", "-r", "250", "-f", "raw", "-o", str(path), "-d", f"{seconds:.0f}"]
    return subprocess.Popen([*command, "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize(path: Path, cpu_seconds: float, units: int, unit: str, top: int) -> str:
    """Self and inclusive shares of the sampled (non-idle) stacks, with CPU µs per unit of work."""
    total = 0
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        # The event loop's own frame at the top of a stack means the loop was in C (epoll, callbacks
        # without Python frames): kept, it is real CPU when the process is busy.
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "no samples"
    per_unit = cpu_seconds * 1e6 / max(1, units)
    lines = [
        f"{total} samples; the edge used {cpu_seconds:.1f} CPU s for {units:,} {unit}s = {per_unit:.1f} µs per {unit}",
        "",
        f"self (top {top}): share of samples, µs per {unit}",
    ]
    lines += [
        f"  {count / total:6.1%} {count / total * per_unit:8.2f} µs  {frame}" for frame, count in own.most_common(top)
    ]
    lines += ["", f"inclusive (top {top}, without the outermost frames)"]
    shown = 0
    for frame, count in inclusive.most_common():
        if count / total > 0.97:
            continue  # <module>, run, the loop: everything
        lines.append(f"  {count / total:6.1%} {count / total * per_unit:8.2f} µs  {frame}")
        shown += 1
        if shown >= top:
            break
    return "\n".join(lines)


async def _fanout(args: argparse.Namespace, harness: Harness, out: Path) -> str:
    edge = await asyncio.to_thread(harness.start_edge, args.edge)
    try:
        await harness.init_clients(args.clients)
        await harness.connect(edge, window=args.window, resume=False)
        await harness.step(edge, 2000.0, 1.0, 5.0, 0.005)
        await settle(edge)
        path = out / f"{args.edge}-fanout.folded"
        cpu, kernel = edge.cpu(), edge.kernel_cpu()
        spy = _spy(edge.pid, args.seconds, path)
        step = await harness.step(edge, args.rate, args.seconds, 10.0, 0.02)
        cpu, kernel = edge.cpu() - cpu, edge.kernel_cpu() - kernel
        await asyncio.to_thread(spy.wait)
        p99 = step.latency.percentile(0.99) or 0.0
        header = (
            f"{args.edge} fan-out at {args.rate:,.0f} offered deliveries/s for {args.seconds:g} s:"
            f" delivered {step.delivered_per_s:,.0f}/s, p99 {p99:.1f} ms, missing {step.missing},"
            f" edge CPU {step.edge_cpu:.0%} ({kernel / cpu if cpu else 0:.0%} of it in the kernel),"
            f" others {step.foreign_cpu:.1f} cores\n"
        )
        return header + summarize(path, cpu, step.deliveries, "delivery", args.top)
    finally:
        await harness.drop()
        await asyncio.to_thread(edge.stop)


async def _connect(args: argparse.Namespace, harness: Harness, out: Path) -> str:
    edge = await asyncio.to_thread(harness.start_edge, args.edge)
    try:
        await harness.init_clients(args.clients)
        path = out / f"{args.edge}-connect.folded"
        cpu = edge.cpu()
        spy = _spy(edge.pid, 600, path)
        connected = await harness.connect(edge, window=args.window, resume=False)
        cpu = edge.cpu() - cpu
        spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled when interrupted
        await asyncio.to_thread(spy.wait)
        header = (
            f"{args.edge}: {connected['offsets']:,} streams opened in {connected['offset_seconds']:.1f} s"
            f" ({connected['offsets'] / max(1e-9, connected['offset_seconds'] or 0):,.0f}/s)\n"
        )
        return header + summarize(path, cpu, connected["offsets"], "stream", args.top)
    finally:
        await harness.drop()
        await asyncio.to_thread(edge.stop)


async def _run(args: argparse.Namespace, root: Path) -> str:
    out: Path = args.out
    harness = Harness(root, edge_cpus="0", load_cpus="1")
    await harness.start(args.clients)
    try:
        if args.mode == "fanout":
            return await _fanout(args, harness, out)
        return await _connect(args, harness, out)
    finally:
        await harness.stop()


def main(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    if args.nice:
        set_niceness(args.nice)
    with tempfile.TemporaryDirectory(prefix="userstream-profile-") as scratch:
        text = uvloop.run(_run(args, Path(scratch)))
    print(text)
    (args.out / f"{args.edge}-{args.mode}.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
