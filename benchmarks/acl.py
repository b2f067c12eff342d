"""acl: how many GetSubject and CheckAccess calls one acl process answers, measured from another process.

Starts a nats-server, ``userstream activity`` (it owns the log) and
``userstream acl`` as their own processes, records 5 memberships for each of
``--users`` users through the activity service, waits until acl reflects them,
then measures from separate load processes (never the acl interpreter; the
closed loops use ``--clients`` processes so that the load generator is not what
limits them), in each of several runs, alternating scenarios:

- ``subject``: GetSubject(at_cursor="") from many concurrent callers — calls/s
  (target ≥ 5,000 per acl process);
- ``subject-now``: GetSubject(at_cursor="now"), which runs the coalesced
  barrier — calls/s (target ≥ 5,000);
- ``check100``: CheckAccess with 100 items — calls/s (target ≥ 1,000);
- ``subject@1000/s`` and ``subject-now@1000/s``: paced at 1,000 calls/s (open
  loop: each call starts on schedule, latency from its scheduled start) —
  p50/p99 (target p99 ≤ 5 ms);
- ``subjects-now×100``: GetSubjects with 100 ``now`` questions per call, as the
  edge batches one moment's connects — subjects/s (compared with the same
  5,000/s);
- ``health`` (baseline, no target): the standard health check on the same
  server — what this gRPC stack and machine allow for a call that does nothing.

Requests are serialized once and responses left undecoded, so the load
generator spends its CPU on calls, not on protobuf. The machine is shared and
noisy: compare medians of several runs, never a single one.

    python -m benchmarks.acl              # 5 runs of 5 s per scenario
    python -m benchmarks.acl --quick      # 2 runs of 2 s: a smoke check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks._stack import cpu_seconds, free_port
from userstream.acl_state import MembershipProjection, Subject
from userstream.cursor import CursorCodec
from userstream.embedded_nats import NatsServerProcess
from userstream.events import ActivityInput, is_valid_id
from userstream.events.model import Action
from userstream.proto.acl.v1 import acl_pb2 as pb
from userstream.rpc.acl import AclClient, subject_to_pb
from userstream.rpc.activity import ActivityClient

TARGET_SUBJECT_CALLS_PER_S = 5_000
TARGET_CHECK_CALLS_PER_S = 1_000
TARGET_P99_MS = 5.0
MEMBERSHIPS_PER_USER = 5
ORGANIZATIONS = 200
CHECK_ITEMS = 100
BATCH = 100  # questions per GetSubjects call (the edge batches one moment's connects)
_START_TIMEOUT = 30.0
_CALL_TIMEOUT = 10.0
_GET_SUBJECT = "/userstream.acl.v1.AclService/GetSubject"
_GET_SUBJECTS = "/userstream.acl.v1.AclService/GetSubjects"
_CHECK_ACCESS = "/userstream.acl.v1.AclService/CheckAccess"
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_LOAD_BATCH = 500


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="2 runs of 2 s per scenario (smoke check)")
    parser.add_argument("--runs", type=int, default=None, help="runs per scenario (default 5, quick 2)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 5, quick 2)")
    parser.add_argument("--users", type=int, default=None, help="users with 5 memberships each (default 10000)")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent callers (default 64)")
    parser.add_argument("--rate", type=float, default=1000.0, help="paced calls/s (default 1000)")
    parser.add_argument("--clients", type=int, default=2, help="load processes for the closed loops (default 2)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write every number as JSON")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR", help="keep NATS data and logs in DIR")


# --- the population ---------------------------------------------------------------------------


def user(index: int) -> str:
    return f"bench-u{index}"


def orgs_of(index: int) -> list[str]:
    return [f"bench-o{(index * 7 + step * 41) % ORGANIZATIONS}" for step in range(MEMBERSHIPS_PER_USER)]


def subject_request(index: int, at_cursor: str) -> bytes:
    return pb.GetSubjectRequest(user_id=user(index), at_cursor=at_cursor).SerializeToString()


def subjects_request(indexes: range, at_cursor: str) -> bytes:
    """GetSubjects with one question per index: what the edge sends for the connects of one moment."""
    questions = [pb.GetSubjectRequest(user_id=user(index), at_cursor=at_cursor) for index in indexes]
    return pb.GetSubjectsRequest(requests=questions).SerializeToString()


def check_request(index: int) -> bytes:
    rng = random.Random(index)
    items = [
        pb.CheckAccessRequest.Item(
            entity_type=rng.choice(("page", "attachment", "organization")),
            organization_id=f"bench-o{rng.randrange(ORGANIZATIONS)}",
            action="read",
        )
        for _ in range(CHECK_ITEMS)
    ]
    return pb.CheckAccessRequest(user_id=user(index), items=items).SerializeToString()


# --- the services ------------------------------------------------------------------------------


@dataclass
class Stack:
    nats: NatsServerProcess
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    acl_address: str = ""
    activity_address: str = ""

    @property
    def acl_pid(self) -> int:
        return self.processes[-1].pid


@contextmanager
def running_stack(root: Path) -> Iterator[Stack]:
    nats_server = NatsServerProcess(store_dir=root / "nats", log_file=root / "nats.log")
    nats_server.start()
    stack = Stack(nats_server)
    environment = {key: value for key, value in os.environ.items() if not key.startswith("USERSTREAM_")}
    environment |= {"USERSTREAM_NATS_URL": nats_server.url, "USERSTREAM_LOG_LEVEL": "warning"}
    try:
        for service in ("activity", "acl"):
            port = free_port()
            with (root / f"{service}.log").open("wb") as log_file:
                stack.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "userstream.cli", service, "--port", str(port)],
                        env=environment,
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                    )
                )
            address = f"127.0.0.1:{port}"
            asyncio.run(_wait_serving(address))
            setattr(stack, f"{service}_address", address)
        yield stack
    finally:
        for process in stack.processes:
            process.terminate()
        for process in stack.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        nats_server.kill()


async def _wait_serving(address: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{address} did not become SERVING within {_START_TIMEOUT} s")


async def load_population(stack: Stack, users: int) -> None:
    """Record every membership through activity; return once acl reflects the last one."""
    activity = ActivityClient(stack.activity_address, timeout=60.0)
    acl = AclClient(stack.acl_address)
    try:
        memberships = [
            ActivityInput(type="membership.created", user_id=user(index), organization_id=org, role="member")
            for index in range(users)
            for org in orgs_of(index)
        ]
        for start in range(0, len(memberships), _LOAD_BATCH):
            await activity.record_many(memberships[start : start + _LOAD_BATCH])
        subject = await acl.get_subject(user(users - 1), "now")
        assert len(subject.memberships) == MEMBERSHIPS_PER_USER, subject
    finally:
        await activity.close()
        await acl.close()


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    calls_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    # CPU seconds the acl process (all its threads) spent per answered call: load-independent, unlike calls/s.
    acl_cpu_us_per_call: float = 0.0


def _raw_method(channel: grpc.aio.Channel, method: str) -> Callable[..., grpc.aio.UnaryUnaryCall[bytes, bytes]]:
    # Registered, as the generated stubs (and so the edge's AclClient) call it: the server's fast path.
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None, _registered_method=True)


async def closed_loop(
    address: str, method: str, requests: list[bytes], concurrency: int, duration: float, start_at: float = 0.0
) -> Result:
    """``concurrency`` callers, each starting its next call when the previous one returns.

    ``start_at`` (wall clock) lets several load processes start together.
    """
    calls = 0
    errors = 0
    codes: dict[str, int] = {}
    async with grpc.aio.insecure_channel(address) as channel:
        invoke = _raw_method(channel, method)
        await invoke(requests[0], timeout=_CALL_TIMEOUT)  # connected before the clock starts
        if start_at > time.time():
            await asyncio.sleep(start_at - time.time())
        deadline = time.perf_counter() + duration

        async def caller(offset: int) -> None:
            nonlocal calls, errors
            index = offset
            while time.perf_counter() < deadline:
                try:
                    await invoke(requests[index % len(requests)], timeout=_CALL_TIMEOUT)
                    calls += 1
                except grpc.aio.AioRpcError as exc:
                    errors += 1
                    codes[exc.code().name] = codes.get(exc.code().name, 0) + 1
                index += concurrency

        started = time.perf_counter()
        await asyncio.gather(*(caller(offset) for offset in range(concurrency)))
        elapsed = time.perf_counter() - started
    return Result(method, calls_per_s=calls / elapsed, errors=errors, error_codes=codes, calls=calls)


def _closed_loop_process(
    address: str, method: str, requests: list[bytes], concurrency: int, duration: float, start_at: float
) -> Result:
    return uvloop.run(closed_loop(address, method, requests, concurrency, duration, start_at))


async def closed_loop_clients(
    pool: ProcessPoolExecutor | None,
    clients: int,
    address: str,
    method: str,
    requests: list[bytes],
    concurrency: int,
    duration: float,
) -> Result:
    """The closed loop from ``clients`` load processes at once (so the load generator is not the limit)."""
    if pool is None or clients <= 1:
        return await closed_loop(address, method, requests, concurrency, duration)
    loop = asyncio.get_running_loop()
    start_at = time.time() + 1.0  # every process connected and waiting
    per_client = max(1, concurrency // clients)
    results = await asyncio.gather(
        *(
            loop.run_in_executor(pool, _closed_loop_process, address, method, requests, per_client, duration, start_at)
            for _ in range(clients)
        )
    )
    return Result(
        method,
        calls_per_s=sum(result.calls_per_s for result in results),
        calls=sum(result.calls for result in results),
        errors=sum(result.errors for result in results),
        error_codes={
            code: sum(result.error_codes.get(code, 0) for result in results)
            for code in {code for result in results for code in result.error_codes}
        },
    )


async def paced(address: str, method: str, requests: list[bytes], rate: float, duration: float) -> Result:
    """Calls started on a fixed schedule; latency counts from the scheduled start (no coordinated omission)."""
    latencies: list[float] = []
    errors = 0
    codes: dict[str, int] = {}
    async with grpc.aio.insecure_channel(address) as channel:
        invoke = _raw_method(channel, method)
        await invoke(requests[0], timeout=_CALL_TIMEOUT)
        total = int(rate * duration)
        start = time.perf_counter()

        async def one(index: int, scheduled: float) -> None:
            nonlocal errors
            try:
                await invoke(requests[index % len(requests)], timeout=_CALL_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                errors += 1
                codes[exc.code().name] = codes.get(exc.code().name, 0) + 1
                return
            latencies.append((time.perf_counter() - scheduled) * 1000)

        tasks = []
        for index in range(total):
            scheduled = start + index / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(index, scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    latencies.sort()
    return Result(
        method,
        calls_per_s=len(latencies) / elapsed,
        calls=len(latencies),
        p50_ms=latencies[len(latencies) // 2] if latencies else 0.0,
        p99_ms=latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
        errors=errors,
        error_codes=codes,
    )


def handler_cost_us(users: int, calls: int = 20_000) -> float:
    """What GetSubject("") costs acl besides gRPC: parse, validate, read the projection, build and encode."""
    projection = MembershipProjection(log_id=1)
    sequence = 0
    for index in range(users):
        for org in orgs_of(index):
            sequence += 1
            projection.apply(sequence, user(index), Action.CREATE, org, "member")
    codec = CursorCodec(1)
    requests = [subject_request(index % users, "") for index in range(1000)]
    started = time.perf_counter()
    for index in range(calls):
        request = pb.GetSubjectRequest.FromString(requests[index % len(requests)])
        if not is_valid_id(request.user_id):
            raise AssertionError(request.user_id)
        memberships = dict(projection.memberships(request.user_id))
        subject = Subject(request.user_id, "user", memberships, codec.encode(sequence))
        subject_to_pb(subject).SerializeToString()
    return (time.perf_counter() - started) / calls * 1e6


# --- the report --------------------------------------------------------------------------------


def _median_and_range(values: list[float]) -> str:
    return f"{statistics.median(values):>7,.0f}  ({min(values):,.0f}–{max(values):,.0f})"


def report(results: dict[str, list[Result]], users: int, runs: int, duration: float) -> bool:
    """Print the table; True when every target was met without errors."""
    print(f"\nacl benchmark: {users} users × {MEMBERSHIPS_PER_USER} memberships, {runs} runs × {duration:g} s each")
    print(
        f"{'scenario':<18} {'calls/s median (range)':<30} {'p50 ms':>7} {'p99 ms':>7} {'acl µs/call':>11}"
        f" {'per acl core':>12}  errors  target"
    )
    ok = True
    targets = {
        "subject": ("calls/s", TARGET_SUBJECT_CALLS_PER_S),
        "subject-now": ("calls/s", TARGET_SUBJECT_CALLS_PER_S),
        "check100": ("calls/s", TARGET_CHECK_CALLS_PER_S),
        "subject@rate": ("p99", TARGET_P99_MS),
        "subject-now@rate": ("p99", TARGET_P99_MS),
        "subjects-now×100": ("subjects/s", TARGET_SUBJECT_CALLS_PER_S),
        "health": ("baseline", 0),
    }
    for name, measured in results.items():
        rates = [result.calls_per_s for result in measured]
        p50 = statistics.median(result.p50_ms for result in measured)
        p99 = statistics.median(result.p99_ms for result in measured)
        errors = sum(result.errors for result in measured)
        kind, target = targets[name]
        if kind == "baseline":
            met, wanted = True, "(baseline)"
        elif kind == "calls/s":
            met, wanted = statistics.median(rates) >= target, f"≥ {target:,} calls/s"
        elif kind == "subjects/s":  # a batch answers BATCH subjects per call
            rates = [rate * BATCH for rate in rates]
            met, wanted = statistics.median(rates) >= target, f"≥ {target:,} subjects/s (calls × {BATCH})"
        else:
            met, wanted = p99 <= target, f"p99 ≤ {target} ms"
        ok = ok and met and errors == 0
        latency = f"{p50:>7.2f} {p99:>7.2f}" if kind == "p99" else f"{'':>7} {'':>7}"
        cpu = statistics.median(result.acl_cpu_us_per_call for result in measured)
        per_core = f"{1e6 / cpu:>12,.0f}" if cpu else f"{'':>12}"
        verdict = "" if kind == "baseline" else ("ok" if met else "MISSED")
        print(
            f"{name:<18} {_median_and_range(rates):<30} {latency} {cpu:>11.0f} {per_core}"
            f"  {errors:>6}  {wanted} {verdict}"
        )
    print("(acl µs/call: CPU of the acl process per answered call; per acl core: 10⁶ / that, the rate one busy core")
    print(" would sustain — less sensitive to a shared machine than calls/s, which also pays for the load generator)")
    return ok


async def measure(
    stack: Stack,
    users: int,
    runs: int,
    duration: float,
    concurrency: int,
    rate: float,
    clients: int,
    pool: ProcessPoolExecutor | None,
) -> dict[str, list[Result]]:
    sample = range(0, users, max(1, users // 1000))
    latest = [subject_request(index, "") for index in sample]
    now = [subject_request(index, "now") for index in sample]
    checks = [check_request(index) for index in list(sample)[:200]]
    batches = [
        subjects_request(range(start, start + BATCH), "now") for start in range(0, min(users, 20 * BATCH), BATCH)
    ]
    health = [health_pb2.HealthCheckRequest().SerializeToString()]
    address = stack.acl_address
    scenarios: dict[str, Callable[[], object]] = {
        "subject": lambda: closed_loop_clients(pool, clients, address, _GET_SUBJECT, latest, concurrency, duration),
        "subject-now": lambda: closed_loop_clients(pool, clients, address, _GET_SUBJECT, now, concurrency, duration),
        "check100": lambda: closed_loop_clients(pool, clients, address, _CHECK_ACCESS, checks, concurrency, duration),
        "subject@rate": lambda: paced(address, _GET_SUBJECT, latest, rate, duration),
        "subject-now@rate": lambda: paced(address, _GET_SUBJECT, now, rate, duration),
        "subjects-now×100": lambda: closed_loop_clients(
            pool, clients, address, _GET_SUBJECTS, batches, concurrency, duration
        ),
        "health": lambda: closed_loop_clients(pool, clients, address, _HEALTH_CHECK, health, concurrency, duration),
    }
    results: dict[str, list[Result]] = {name: [] for name in scenarios}
    for run in range(runs):
        for name, scenario in scenarios.items():  # alternate: noise hits every scenario alike
            cpu_before = cpu_seconds([stack.acl_pid])
            result = await scenario()  # type: ignore[misc]
            cpu = cpu_seconds([stack.acl_pid]) - cpu_before
            result.scenario = name
            result.acl_cpu_us_per_call = cpu / result.calls * 1e6 if result.calls else 0.0
            results[name].append(result)
            print(
                f"run {run + 1}/{runs} {name:<18} {result.calls_per_s:>9,.0f} calls/s"
                f"  p50 {result.p50_ms:.2f} ms  p99 {result.p99_ms:.2f} ms"
                f"  errors {result.errors} {result.error_codes or ''}",
                flush=True,
            )
    return results


def main(args: argparse.Namespace) -> int:
    runs = args.runs or (2 if args.quick else 5)
    duration = args.duration or (2.0 if args.quick else 5.0)
    users = args.users or (1000 if args.quick else 10_000)
    with tempfile.TemporaryDirectory(prefix="userstream-bench-acl-") as scratch:
        root = args.keep or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        with running_stack(root) as stack:
            started = time.perf_counter()
            asyncio.run(load_population(stack, users))
            print(f"loaded {users * MEMBERSHIPS_PER_USER:,} memberships in {time.perf_counter() - started:.1f} s")
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=args.clients, mp_context=context) as pool:
                results = uvloop.run(
                    measure(stack, users, runs, duration, args.concurrency, args.rate, args.clients, pool)
                )
    report(results, users, runs, duration)
    handler_us = handler_cost_us(users)
    print(f'acl\'s own work per GetSubject("") without gRPC (in this process): {handler_us:.1f} µs')
    print(f"load average at the end: {' '.join(f'{value:.1f}' for value in os.getloadavg())}")
    if args.json is not None:
        payload = {
            "users": users,
            "runs": runs,
            "duration": duration,
            "cpus": os.cpu_count(),
            "handler_us": handler_us,
            "load_average": os.getloadavg(),
            "results": {name: [asdict(result) for result in measured] for name, measured in results.items()},
        }
        args.json.write_text(json.dumps(payload, indent=2))
    # 0: the run completed. Missed targets are reported in the table, not as a failure (the dispatcher's rule).
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.acl", description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
