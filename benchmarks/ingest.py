"""Ingest: how fast the activity service records, measured from a separate client process.

Starts a nats-server and ``userstream activity`` as its own process (the load
generator below never shares an interpreter with the service), then measures,
in each of several runs:

- ``batch``: RecordActivities, batches of 100 ~300-byte events, 8 callers
  in parallel — events/s (target ≥ 20,000 per activity process);
- ``single``: RecordActivity from many concurrent callers — calls/s (target ≥ 3,000);
- ``latency``: RecordActivity paced at 1,000/s (open loop: a call starts on
  schedule whether or not the previous ones finished) — p50/p99 latency,
  measured from each call's scheduled start.

Every event carries a unique idempotency key, as a change-data-capture feed
would. Prints a table of medians (and the range over runs) and, with
``--json PATH``, writes every number. The machine is shared and noisy: compare
medians of several runs, never a single one.

    python -m benchmarks ingest            # 5 runs of 5 s per scenario
    python -m benchmarks ingest --quick    # 2 runs of 2 s: a smoke check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc

from userstream.embedded_nats import NatsServerProcess
from userstream.events import ActivityInput, Limits, encode_body, validate_activity
from userstream.policy import default_policy
from userstream.proto.activity.v1 import activity_pb2 as pb
from userstream.rpc.activity import input_from_pb, input_to_pb

TARGET_BATCH_EVENTS_PER_S = 20_000
TARGET_SINGLE_CALLS_PER_S = 3_000
EVENT_BYTES = 300
BATCH_SIZE = 100
_START_TIMEOUT = 30.0
_CALL_TIMEOUT = 10.0
_RECORD_ACTIVITY = "/userstream.activity.v1.ActivityService/RecordActivity"
_RECORD_ACTIVITIES = "/userstream.activity.v1.ActivityService/RecordActivities"
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="2 runs of 2 s per scenario (smoke check)")
    parser.add_argument("--runs", type=int, default=None, help="runs per scenario (default 5, quick 2)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 5, quick 2)")
    parser.add_argument("--batch-callers", type=int, default=8, help="parallel RecordActivities callers (default 8)")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent RecordActivity callers (default 64)")
    parser.add_argument("--rate", type=float, default=1000.0, help="paced RecordActivity calls/s (default 1000)")
    parser.add_argument(
        "--floor", action="store_true", help="also measure Health/Check on the same server: gRPC's own per-call cost"
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write every number as JSON")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR", help="keep NATS data and logs in DIR")


# --- the events -------------------------------------------------------------------------------


def _sample(index: int, key_prefix: str, padding: int) -> pb.Activity:
    return input_to_pb(
        ActivityInput(
            type="page.updated",
            entity_id=f"page-{index % 5000}",
            organization_id=f"org-{index % 50}",
            user_id=f"user-{index % 997}",
            data_json='{"title":"Quarterly plan","rev":' + str(index) + ',"text":"' + "x" * padding + '"}',
            changed_keys=("title",),
            idempotency_key=f"{key_prefix}-{index}",
        )
    )


def _padding_for(target: int) -> int:
    """How much filler makes the stored body about ``target`` bytes."""
    probe = ActivityInput(
        type="page.updated",
        entity_id="page-1234",
        organization_id="org-12",
        user_id="user-123",
        data_json='{"title":"Quarterly plan","rev":123456,"text":""}',
        changed_keys=("title",),
    )
    size = len(encode_body(validate_activity(probe, default_policy(), Limits())))
    return max(0, target - size)


class Events:
    """Unique events (every one has its own idempotency key), serialized the way a client sends them."""

    def __init__(self, prefix: str, event_bytes: int = EVENT_BYTES) -> None:
        self._prefix = prefix
        self._padding = _padding_for(event_bytes)
        self._next = 0

    def _activity(self) -> pb.Activity:
        self._next += 1
        return _sample(self._next, self._prefix, self._padding)

    def single(self) -> bytes:
        return pb.RecordActivityRequest(activity=self._activity()).SerializeToString()

    def batch(self, size: int) -> bytes:
        return pb.RecordActivitiesRequest(activities=[self._activity() for _ in range(size)]).SerializeToString()

    def body_size(self) -> int:
        activity = self._activity()
        return len(encode_body(validate_activity(input_from_pb(activity), default_policy(), Limits())))


# --- the system under test --------------------------------------------------------------------


@dataclass
class Stack:
    nats: NatsServerProcess
    service: subprocess.Popen[bytes]
    address: str
    log_path: Path


def _listening_port(log_path: Path, service: subprocess.Popen[bytes], deadline: float) -> int:
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise RuntimeError(f"userstream activity exited ({service.returncode}); see {log_path}")
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"rpc.listening"' in line:
                return int(json.loads(line)["port"])
        time.sleep(0.05)
    raise TimeoutError(f"userstream activity did not start; see {log_path}")


def _wait_serving(address: str, deadline: float) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status
            except grpc.RpcError:
                status = None
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.05)
    raise TimeoutError(f"userstream activity at {address} never became SERVING")


@contextmanager
def running_stack(root: Path) -> Iterator[Stack]:
    """nats-server + ``userstream activity`` (its own process), both stopped afterwards."""
    nats = NatsServerProcess(store_dir=root / "nats", log_file=root / "nats.log")
    nats.start()
    log_path = root / "activity.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("USERSTREAM_")}
    env |= {"USERSTREAM_NATS_URL": nats.url, "USERSTREAM_LOG_FORMAT": "json", "USERSTREAM_LOG_LEVEL": "info"}
    command = [str(Path(sys.executable).parent / "userstream"), "activity", "--port", "0"]
    with log_path.open("wb") as log_file:
        service = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        address = f"127.0.0.1:{_listening_port(log_path, service, deadline)}"
        _wait_serving(address, deadline)
        yield Stack(nats, service, address, log_path)
    finally:
        service.terminate()
        try:
            service.wait(10)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        nats.stop()


class CpuMeter:
    """CPU seconds a process used (user + system), from /proc; None where /proc is missing."""

    def __init__(self, pid: int | None) -> None:
        self._path = Path(f"/proc/{pid}/stat") if pid else None
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def seconds(self) -> float | None:
        if self._path is None or not self._path.exists():
            return None
        fields = self._path.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self._tick


# --- the load ---------------------------------------------------------------------------------


def _raw(channel: grpc.aio.Channel, method: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    identity: Callable[[bytes], bytes] = lambda data: data  # noqa: E731  # requests are pre-serialized
    return channel.unary_unary(method, request_serializer=identity, response_deserializer=identity)


@dataclass
class Measurement:
    scenario: str
    seconds: float
    calls: int
    events: int
    errors: int
    service_cpu: float | None = None  # share of one core the activity process used
    nats_cpu: float | None = None
    client_cpu: float | None = None  # the load generator (this process)
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds

    @property
    def service_us_per_event(self) -> float | None:
        """Activity CPU per recorded event: steadier than throughput on a shared machine."""
        if self.service_cpu is None or not self.events:
            return None
        return self.service_cpu * self.seconds / self.events * 1e6

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        del data["latencies_ms"]
        data |= {
            "events_per_s": self.events_per_s,
            "calls_per_s": self.calls_per_s,
            "service_us_per_event": self.service_us_per_event,
        }
        if self.latencies_ms:
            data |= {"p50_ms": self.percentile(0.50), "p99_ms": self.percentile(0.99), "max_ms": max(self.latencies_ms)}
        return data


async def _closed_loop(
    method: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes],
    make_request: Callable[[], bytes],
    events_per_call: int,
    callers: int,
    duration: float,
) -> tuple[int, int, float]:
    """``callers`` loops calling back to back for ``duration`` s; returns (calls, errors, elapsed)."""
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + duration
    calls = errors = 0

    async def caller() -> None:
        nonlocal calls, errors
        while loop.time() < stop_at:
            request = make_request()
            try:
                await method(request, timeout=_CALL_TIMEOUT)
            except grpc.aio.AioRpcError:
                errors += 1
            else:
                calls += 1

    started = loop.time()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return calls, errors, loop.time() - started


async def _paced(
    method: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes], events: Events, rate: float, duration: float
) -> tuple[list[float], int, float]:
    """Open loop at ``rate`` calls/s; latency counts from each call's scheduled start.

    Times come from ``perf_counter``: uvloop's ``loop.time()`` has millisecond resolution.
    """
    total = int(rate * duration)
    latencies: list[float] = []
    errors = 0
    pending: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()

    async def one(scheduled: float, request: bytes) -> None:
        nonlocal errors
        try:
            await method(request, timeout=_CALL_TIMEOUT)
        except grpc.aio.AioRpcError:
            errors += 1
        else:
            latencies.append((time.perf_counter() - scheduled) * 1000)

    started = time.perf_counter()
    for index in range(total):
        scheduled = started + index / rate
        request = events.single()
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one(scheduled, request))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    return latencies, errors, time.perf_counter() - started


async def _measure(
    scenario: str, stack: Stack, run: Callable[[grpc.aio.Channel], Any], meters: tuple[CpuMeter, CpuMeter]
) -> Measurement:
    service_meter, nats_meter = meters
    async with grpc.aio.insecure_channel(stack.address) as channel:
        cpu_before = (service_meter.seconds(), nats_meter.seconds())
        client_before = time.process_time()
        wall = time.monotonic()
        measurement: Measurement = await run(channel)
        wall = time.monotonic() - wall
        client_after = time.process_time()
        cpu_after = (service_meter.seconds(), nats_meter.seconds())
    measurement.client_cpu = (client_after - client_before) / wall
    if cpu_before[0] is not None and cpu_after[0] is not None:
        measurement.service_cpu = (cpu_after[0] - cpu_before[0]) / wall
    if cpu_before[1] is not None and cpu_after[1] is not None:
        measurement.nats_cpu = (cpu_after[1] - cpu_before[1]) / wall
    measurement.scenario = scenario
    return measurement


def _scenarios(
    args: argparse.Namespace, duration: float, run_index: int
) -> dict[str, Callable[[grpc.aio.Channel], Any]]:
    async def batch(channel: grpc.aio.Channel) -> Measurement:
        events = Events(f"b{run_index}-{time.time_ns()}")
        calls, errors, elapsed = await _closed_loop(
            _raw(channel, _RECORD_ACTIVITIES),
            lambda: events.batch(BATCH_SIZE),
            BATCH_SIZE,
            args.batch_callers,
            duration,
        )
        return Measurement("batch", elapsed, calls, calls * BATCH_SIZE, errors)

    async def single(channel: grpc.aio.Channel) -> Measurement:
        events = Events(f"s{run_index}-{time.time_ns()}")
        calls, errors, elapsed = await _closed_loop(
            _raw(channel, _RECORD_ACTIVITY), events.single, 1, args.concurrency, duration
        )
        return Measurement("single", elapsed, calls, calls, errors)

    async def latency(channel: grpc.aio.Channel) -> Measurement:
        events = Events(f"l{run_index}-{time.time_ns()}")
        latencies, errors, elapsed = await _paced(_raw(channel, _RECORD_ACTIVITY), events, args.rate, duration)
        return Measurement("latency", elapsed, len(latencies), len(latencies), errors, latencies_ms=latencies)

    async def floor(channel: grpc.aio.Channel) -> Measurement:
        # Health/Check on the same server: what any unary call costs there before our code runs.
        check = health_pb2.HealthCheckRequest(service="").SerializeToString()
        calls, errors, elapsed = await _closed_loop(
            _raw(channel, _HEALTH_CHECK), lambda: check, 1, args.concurrency, duration
        )
        return Measurement("floor", elapsed, calls, calls, errors)

    scenarios = {"batch": batch, "single": single, "latency": latency}
    if args.floor:
        scenarios["floor"] = floor
    return scenarios


async def _run_all(args: argparse.Namespace, stack: Stack, runs: int, duration: float) -> list[Measurement]:
    meters = (CpuMeter(stack.service.pid), CpuMeter(stack.nats.pid))
    # Warm up: connections, JIT-less but cache-warm paths, the stream's first blocks.
    for warm in _scenarios(args, min(1.0, duration), -1).values():
        await _measure("warmup", stack, warm, meters)
    results: list[Measurement] = []
    for run_index in range(runs):
        for name, scenario in _scenarios(args, duration, run_index).items():
            measurement = await _measure(name, stack, scenario, meters)
            results.append(measurement)
            print(f"  run {run_index + 1}/{runs} {_line(measurement)}", flush=True)
    return results


# --- reporting --------------------------------------------------------------------------------


def _line(m: Measurement) -> str:
    cpu = ""
    if m.service_cpu is not None:
        cpu = f"  cpu: activity {m.service_cpu:.0%} ({m.service_us_per_event or 0:.0f} µs/event)"
    if m.nats_cpu is not None:
        cpu += f" nats {m.nats_cpu:.0%}"
    if m.client_cpu is not None:
        cpu += f" client {m.client_cpu:.0%}"
    if m.scenario == "batch":
        return f"batch    {m.events_per_s:>9,.0f} events/s  errors {m.errors}{cpu}"
    if m.scenario in ("single", "floor"):
        return f"{m.scenario:<8} {m.calls_per_s:>9,.0f} calls/s   errors {m.errors}{cpu}"
    return (
        f"latency  p50 {m.percentile(0.5) or 0:.2f} ms  p99 {m.percentile(0.99) or 0:.2f} ms"
        f"  at {m.calls_per_s:,.0f}/s  errors {m.errors}{cpu}"
    )


def _median(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(results: list[Measurement]) -> dict[str, Any]:
    by = {name: [m for m in results if m.scenario == name] for name in ("batch", "single", "latency", "floor")}
    summary: dict[str, Any] = {
        "batch_events_per_s": _median([m.events_per_s for m in by["batch"]]),
        "single_calls_per_s": _median([m.calls_per_s for m in by["single"]]),
        "latency_p50_ms": _median([m.percentile(0.5) or 0.0 for m in by["latency"]]),
        "latency_p99_ms": _median([m.percentile(0.99) or 0.0 for m in by["latency"]]),
        "latency_rate_per_s": _median([m.calls_per_s for m in by["latency"]]),
        "errors": sum(m.errors for m in results),
    }
    if by["floor"]:
        summary["floor_calls_per_s"] = _median([m.calls_per_s for m in by["floor"]])
    for name, measurements in by.items():
        if not measurements:
            continue
        cpus = [m.service_cpu for m in measurements if m.service_cpu is not None]
        costs = [cost for m in measurements if (cost := m.service_us_per_event) is not None]
        if cpus:
            summary[f"{name}_activity_cpu"] = statistics.median(cpus)
        if costs:
            summary[f"{name}_activity_us_per_event"] = _median(costs)
    return summary


def _table(summary: dict[str, Any], args: argparse.Namespace, runs: int, duration: float, body: int) -> str:
    def cell(key: str, unit: str, digits: int = 0) -> str:
        value = summary.get(key)
        if value is None:
            return f"{'n/a':>10} {unit:<9}"
        return f"{value['median']:>10,.{digits}f} {unit:<9} ({value['min']:,.{digits}f}–{value['max']:,.{digits}f})"

    def verdict(key: str, target: int) -> str:
        return "met" if summary[key]["median"] >= target else "MISSED"

    return "\n".join(
        [
            f"ingest — medians of {runs} runs × {duration:g} s (min–max in parentheses); events of {body} bytes",
            f"  RecordActivities, batches of {BATCH_SIZE}, {args.batch_callers} callers"
            f"  {cell('batch_events_per_s', 'events/s')}"
            f"  target ≥ {TARGET_BATCH_EVENTS_PER_S:,}: {verdict('batch_events_per_s', TARGET_BATCH_EVENTS_PER_S)}",
            f"      activity CPU per event          {cell('batch_activity_us_per_event', 'µs', 1)}",
            f"  RecordActivity, {args.concurrency} concurrent callers"
            f"      {cell('single_calls_per_s', 'calls/s')}"
            f"  target ≥ {TARGET_SINGLE_CALLS_PER_S:,}: {verdict('single_calls_per_s', TARGET_SINGLE_CALLS_PER_S)}",
            f"      activity CPU per call           {cell('single_activity_us_per_event', 'µs', 1)}",
            f"  RecordActivity paced at {args.rate:,.0f}/s    p50 {cell('latency_p50_ms', 'ms', 2)}",
            f"                                     p99 {cell('latency_p99_ms', 'ms', 2)}",
            *(
                [
                    f"  Health/Check (gRPC floor), {args.concurrency} callers  {cell('floor_calls_per_s', 'calls/s')}",
                    f"      activity CPU per call           {cell('floor_activity_us_per_event', 'µs', 1)}",
                ]
                if "floor_calls_per_s" in summary
                else []
            ),
            f"  errors: {summary['errors']}",
        ]
    )


def main(args: argparse.Namespace) -> int:
    runs = args.runs or (2 if args.quick else 5)
    duration = args.duration or (2.0 if args.quick else 5.0)
    body = Events("probe").body_size()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="userstream-bench-") as scratch:
        root = args.keep or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        with running_stack(root) as stack:
            results = uvloop.run(_run_all(args, stack, runs, duration))
    summary = summarize(results)
    load_after = os.getloadavg()
    print(_table(summary, args, runs, duration, body))
    # Other jobs on the machine skew throughput (not CPU per event): say how busy it was.
    print(f"  machine: {os.cpu_count()} cpus, load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    if args.json is not None:
        report = {
            "benchmark": "ingest",
            "config": {
                "runs": runs,
                "duration_s": duration,
                "batch_size": BATCH_SIZE,
                "batch_callers": args.batch_callers,
                "concurrency": args.concurrency,
                "paced_rate": args.rate,
                "event_body_bytes": body,
            },
            "targets": {
                "batch_events_per_s": TARGET_BATCH_EVENTS_PER_S,
                "single_calls_per_s": TARGET_SINGLE_CALLS_PER_S,
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "load_average_before": load_before,
                "load_average_after": load_after,
            },
            "summary": summary,
            "runs": [m.summary() for m in results],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
