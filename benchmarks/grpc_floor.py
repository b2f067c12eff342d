"""grpc-floor: what grpcio's Python server costs per unary call that does nothing, by server flavour.

activity and acl run grpcio's asyncio server under uvloop; their single-call
targets (3,000 RecordActivity and 5,000 GetSubject calls/s per process) are
bounded by it. This measures the floor — a server whose one method returns a
fixed byte string — for each way grpcio can serve Python code:

- ``aio``: ``grpc.aio.server`` on the default asyncio loop;
- ``aio-uvloop``: the same under uvloop (what the services run);
- ``sync-4`` / ``sync-16``: ``grpc.server`` with a thread pool of 4 / 16.

Each server runs in its own process; the load comes from ``--clients``
separate processes (grpc.aio, 32 calls in flight each). Reports calls/s and
the server process's CPU per call (user + kernel, from /proc), alternating the
flavours in every run; compare medians.

    python -m benchmarks grpc-floor            # 3 runs × 5 s per flavour
    python -m benchmarks grpc-floor --quick    # 1 run × 2 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import multiprocessing.pool
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import uvloop

from benchmarks._stack import cpu_seconds, free_port

FLAVOURS = ("aio", "aio-uvloop", "sync-4", "sync-16")
_METHOD = "/benchmark.Floor/Noop"
_IN_FLIGHT_PER_CLIENT = 32
_START_TIMEOUT = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="1 run of 2 s per flavour (smoke check)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load per flavour and run")
    parser.add_argument("--clients", type=int, default=2, help="load processes")
    parser.add_argument("--json", type=Path, help="write every number here")


def _noop(request: bytes, context: object) -> bytes:
    return b"ok"


async def _noop_async(request: bytes, context: object) -> bytes:
    return b"ok"


def _handlers(*, asynchronous: bool) -> grpc.GenericRpcHandler:
    handler = grpc.unary_unary_rpc_method_handler(_noop_async if asynchronous else _noop)
    return grpc.method_handlers_generic_handler("benchmark.Floor", {"Noop": handler})


def serve(flavour: str, port: int) -> None:
    """The server process: ``python -m benchmarks.grpc_floor --serve FLAVOUR PORT``."""
    address = f"127.0.0.1:{port}"
    if flavour.startswith("aio"):

        async def run() -> None:
            server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            server.add_generic_rpc_handlers([_handlers(asynchronous=True)])
            server.add_insecure_port(address)
            await server.start()
            await server.wait_for_termination()

        if flavour == "aio-uvloop":
            uvloop.run(run())
        else:
            asyncio.run(run())
        return
    threads = int(flavour.split("-")[1])
    server = grpc.server(ThreadPoolExecutor(threads), options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers([_handlers(asynchronous=False)])
    server.add_insecure_port(address)
    server.start()
    server.wait_for_termination()


def _load(port: int, duration: float) -> int:
    """One load process: calls completed in ``duration`` seconds."""

    async def run() -> int:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(_METHOD)
            await call(b"", timeout=_START_TIMEOUT, wait_for_ready=True)
            completed = 0
            deadline = time.perf_counter() + duration

            async def caller() -> None:
                nonlocal completed
                while time.perf_counter() < deadline:
                    await call(b"x")
                    completed += 1

            await asyncio.gather(*(caller() for _ in range(_IN_FLIGHT_PER_CLIENT)))
            return completed

    return uvloop.run(run())


def measure(flavour: str, clients: int, duration: float, pool: multiprocessing.pool.Pool) -> dict[str, float]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.grpc_floor", "--serve", flavour, str(port)])
    try:
        pool.apply(_load, (port, 0.2))  # waits until the server answers, warms the channel
        before = cpu_seconds([server.pid])
        started = time.perf_counter()
        calls = sum(pool.starmap(_load, [(port, duration)] * clients))
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds([server.pid]) - before
    finally:
        server.kill()
        server.wait()
    return {"calls_per_s": calls / elapsed, "server_cpu_us_per_call": cpu / max(1, calls) * 1e6}


def main(args: argparse.Namespace) -> int:
    runs, duration = (1, 2.0) if args.quick else (args.runs, args.duration)
    results: dict[str, list[dict[str, float]]] = {flavour: [] for flavour in FLAVOURS}
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.clients) as pool:
        for run in range(1, runs + 1):
            for flavour in FLAVOURS:
                result = measure(flavour, args.clients, duration, pool)
                results[flavour].append(result)
                print(
                    f"  run {run}/{runs} {flavour:<11} {result['calls_per_s']:>8,.0f} calls/s"
                    f"  server {result['server_cpu_us_per_call']:>5.0f} µs/call",
                    flush=True,
                )
    print(f"grpc-floor — medians of {runs} run(s) × {duration:g} s, {args.clients} load processes")
    for flavour, measured in results.items():
        rate = statistics.median(r["calls_per_s"] for r in measured)
        cost = statistics.median(r["server_cpu_us_per_call"] for r in measured)
        print(
            f"  {flavour:<11} {rate:>8,.0f} calls/s   server CPU {cost:>5.0f} µs/call → {1e6 / cost:>6,.0f}/s per core"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        parser = argparse.ArgumentParser(prog="python -m benchmarks.grpc_floor")
        add_arguments(parser)
        sys.exit(main(parser.parse_args()))
