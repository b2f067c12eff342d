"""Outbox: the relay's throughput and commit → first byte latency, beside RecordActivities in the same run.

Starts nats-server, ``userstream activity``, ``acl``, ``edge`` and ``relay`` as
their own processes and a real PostgreSQL (as the tests do), then, in each run:

- ``throughput``: writers commit transactions of 100 outbox rows each as fast
  as PostgreSQL takes them (``INSERT … SELECT generate_series``), so a backlog
  builds; rows/s = rows / (first commit → outbox empty). Then the relay alone:
  stopped while the same number of rows is written, restarted, rows/s from the
  first row recorded to the outbox empty. Beside them the same
  events through ``RecordActivities`` (batches of 100, 8 callers). Goal ≥ 20,000
  rows/s for one relay.
- ``latency``: 1,000 rows/s (transactions of 10 rows, 100 per second, open
  loop) to an organization a subscribed ``/me/stream`` follows; for each row,
  the time from its transaction's commit returning to the change arriving on
  the stream. Beside it the same events through ``RecordActivities`` (10 per
  call, 100 calls/s), timed from the call's start. Goal p50 ≤ 50 ms, p99 ≤ 200 ms.
  Then the outbox measurement again while an older transaction that inserted
  an outbox row stays open throughout: does a long transaction hold others back?

    python -m benchmarks outbox            # 3 runs: 100,000 rows, 10 s of latency
    python -m benchmarks outbox --quick    # 1 run: 20,000 rows, 3 s of latency
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg

from benchmarks._stack import BIN, SECRET, Backbone, Service, _env, _spawn, _wait_http, free_port, start_edge
from tests.support.postgres import PostgresServer
from tests.support.sse import SSEStream, request
from userstream.events.model import ActivityInput
from userstream.outbox import install
from userstream.rpc.activity import ActivityClient
from userstream.tokens import issue_token

TARGET_ROWS_PER_S = 20_000
TARGET_P50_MS = 50.0
TARGET_P99_MS = 200.0
ROWS_PER_TRANSACTION = 100
GRPC_BATCH = 100
GRPC_CALLERS = 8
WRITERS = 4
LATENCY_ROWS_PER_TRANSACTION = 10
LATENCY_TRANSACTIONS_PER_S = 100
USER = "bench-user"
LIVE_ORG = "bench-live"
PAD = "x" * 200  # ~300-byte events, as in the ingest benchmark


@dataclass
class Run:
    relay_rows_per_s: float = 0.0
    # The relay alone: stopped while the rows are written, then draining the backlog (first row gone → empty).
    relay_backlog_rows_per_s: float = 0.0
    grpc_events_per_s: float = 0.0
    relay_latency_ms: dict[str, float] = field(default_factory=dict)
    grpc_latency_ms: dict[str, float] = field(default_factory=dict)
    # The same paced rows while an older transaction holding an outbox row stays open all along.
    relay_latency_open_transaction_ms: dict[str, float] = field(default_factory=dict)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="1 run, 20,000 rows, 3 s of paced latency")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--rows", type=int, default=None, help="rows per throughput measurement")
    parser.add_argument("--latency-seconds", type=float, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write every number here")


def main(args: argparse.Namespace) -> int:
    runs = args.runs or (1 if args.quick else 3)
    rows = args.rows or (20_000 if args.quick else 100_000)
    seconds = args.latency_seconds or (3.0 if args.quick else 10.0)
    results = asyncio.run(_main(runs, rows, seconds))
    _report(results, rows, seconds)
    if args.json:
        args.json.write_text(json.dumps([asdict(run) for run in results], indent=2))
    return 0


async def _main(runs: int, rows: int, seconds: float) -> list[Run]:
    root = Path(tempfile.mkdtemp(prefix="userstream-bench-outbox-"))
    backbone = Backbone(root, cpus=None)
    postgres = PostgresServer()
    services: list[Service] = []
    try:
        backbone.start()
        await asyncio.to_thread(postgres.start)
        dsn = postgres.create_database()
        install(dsn)
        edge = start_edge("userstream", backbone, None)
        services.append(edge)
        relay_port = free_port()

        def start_relay() -> Service:
            relay = _spawn(
                "relay",
                [str(BIN / "userstream"), "relay", "--port", str(relay_port)],
                root,
                _env(NATS_URL=backbone.nats.url, OUTBOX_DSN=dsn),
            )
            services.append(relay)
            _wait_http(relay, f"http://127.0.0.1:{relay_port}/readyz", time.monotonic() + 30)
            return relay

        relay = start_relay()
        activity = ActivityClient(backbone.activity.address, timeout=30)
        await activity.record(
            ActivityInput(type="membership.created", organization_id=LIVE_ORG, user_id=USER, role="member")
        )
        results = []
        for index in range(runs):
            run = Run()
            run.relay_rows_per_s = await _relay_throughput(dsn, rows, index)
            relay.stop()
            await _write_rows(dsn, rows, index + runs)
            relay = start_relay()
            run.relay_backlog_rows_per_s = await _drained(dsn, rows)
            run.grpc_events_per_s = await _grpc_throughput(activity, rows, index)
            edge_url = f"http://{edge.address}"
            run.relay_latency_ms = await _latency(edge_url, seconds, _OutboxSender(dsn))
            run.grpc_latency_ms = await _latency(edge_url, seconds, _GrpcSender(activity))
            async with await psycopg.AsyncConnection.connect(dsn) as long_running:
                await long_running.execute("SELECT userstream.record(type => 'page.updated', organization_id => 'x')")
                run.relay_latency_open_transaction_ms = await _latency(edge_url, seconds, _OutboxSender(dsn))
                await long_running.rollback()
            results.append(run)
            print(f"run {index + 1}: {asdict(run)}", flush=True)
        await activity.close()
        return results
    finally:
        for service in services:
            service.stop()
        backbone.stop()
        postgres.destroy()


def _event(n: int, org: str) -> ActivityInput:
    return ActivityInput(
        type="page.updated", organization_id=org, entity_id=f"p{n % 1000}", data_json=f'{{"n": {n}, "pad": "{PAD}"}}'
    )


async def _relay_throughput(dsn: str, rows: int, run: int) -> float:
    started = time.perf_counter()
    await _write_rows(dsn, rows, run)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        while True:
            cursor = await connection.execute("SELECT EXISTS (SELECT 1 FROM userstream.outbox)")
            row = await cursor.fetchone()
            if row is not None and not row[0]:
                break
            await asyncio.sleep(0.01)
    return rows // ROWS_PER_TRANSACTION * ROWS_PER_TRANSACTION / (time.perf_counter() - started)


async def _drained(dsn: str, rows: int) -> float:
    """Rows/s from the first row of a backlog of ``rows`` recorded to the last."""
    started = None
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        while True:
            cursor = await connection.execute("SELECT count(*) FROM userstream.outbox")
            row = await cursor.fetchone()
            left = int(row[0]) if row else 0
            if started is None and left < rows:
                started = time.perf_counter()
            if left == 0:
                break
            await asyncio.sleep(0.005)
    assert started is not None
    return rows / (time.perf_counter() - started)


async def _write_rows(dsn: str, rows: int, run: int) -> None:
    transactions = rows // ROWS_PER_TRANSACTION
    insert = (
        "INSERT INTO userstream.outbox (type, organization_id, entity_id, data)"
        " SELECT 'page.updated', 'bench-bulk-' || (g %% 50), 'p' || (g %% 1000),"
        " jsonb_build_object('n', g, 'pad', %s::text) FROM generate_series(%s::bigint, %s::bigint) AS g"
    )

    async def writer(first: int) -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
            for number in range(first, transactions, WRITERS):
                start = run * rows + number * ROWS_PER_TRANSACTION
                async with connection.transaction():
                    await connection.execute(insert, (PAD, start, start + ROWS_PER_TRANSACTION - 1))

    await asyncio.gather(*(writer(first) for first in range(WRITERS)))


async def _grpc_throughput(activity: ActivityClient, rows: int, run: int) -> float:
    batches = rows // GRPC_BATCH

    async def caller(first: int) -> None:
        for number in range(first, batches, GRPC_CALLERS):
            base = run * rows + number * GRPC_BATCH
            events = [
                _with_key(_event(n, f"bench-bulk-{n % 50}"), f"bench-{run}-{n}") for n in range(base, base + GRPC_BATCH)
            ]
            await activity.record_many(events)

    started = time.perf_counter()
    await asyncio.gather(*(caller(first) for first in range(GRPC_CALLERS)))
    return batches * GRPC_BATCH / (time.perf_counter() - started)


def _with_key(event: ActivityInput, key: str) -> ActivityInput:
    # The relay gives every row a Nats-Msg-Id; the gRPC events get one too, for the same work in JetStream.
    return ActivityInput(**{**asdict(event), "idempotency_key": key})


class _OutboxSender:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._connection: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    async def send(self, first: int, count: int) -> float:
        if self._connection is None:
            self._connection = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
        async with self._connection.transaction():
            for n in range(first, first + count):
                event = _event(n, LIVE_ORG)
                await self._connection.execute(
                    "SELECT userstream.record(type => %s, organization_id => %s, entity_id => %s, data => %s)",
                    (event.type, event.organization_id, event.entity_id, event.data_json),
                )
        return time.perf_counter()  # the commit returned: from here on the rows are the relay's

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()


class _GrpcSender:
    def __init__(self, activity: ActivityClient) -> None:
        self._activity = activity

    async def send(self, first: int, count: int) -> float:
        started = time.perf_counter()
        await self._activity.record_many([_event(n, LIVE_ORG) for n in range(first, first + count)])
        return started

    async def close(self) -> None:
        return None


async def _latency(edge_url: str, seconds: float, sender: _OutboxSender | _GrpcSender) -> dict[str, float]:
    token = issue_token(USER, SECRET, 3600)
    stream = await request(edge_url, "/me/stream", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert isinstance(stream, SSEStream), stream
    arrivals: dict[int, float] = {}
    while (await stream.next_event(timeout=10)).event != "offset":
        pass

    async def read() -> None:
        while True:
            event = await stream.next_event(timeout=60)
            if event.event == "change":
                arrivals[int(event.json()["data"]["n"])] = time.perf_counter()

    reading = asyncio.create_task(read())
    sent: dict[int, float] = {}
    base = int(time.time() * 1000) % 1_000_000_000 * 1000  # numbers not used by an earlier measurement
    transactions = int(seconds * LATENCY_TRANSACTIONS_PER_S)
    interval = 1 / LATENCY_TRANSACTIONS_PER_S
    pending: set[asyncio.Task[None]] = set()
    start = time.perf_counter()

    async def one(first: int) -> None:
        at = await sender.send(first, LATENCY_ROWS_PER_TRANSACTION)
        for n in range(first, first + LATENCY_ROWS_PER_TRANSACTION):
            sent[n] = at

    # The outbox sender has one connection (one transaction at a time): its sends queue behind each other,
    # which is what an application's connection does too. gRPC calls overlap.
    lock = asyncio.Lock() if isinstance(sender, _OutboxSender) else None
    for index in range(transactions):
        await asyncio.sleep(max(0.0, start + index * interval - time.perf_counter()))
        first = base + index * LATENCY_ROWS_PER_TRANSACTION

        async def guarded(first: int = first) -> None:
            if lock is None:
                await one(first)
            else:
                async with lock:
                    await one(first)

        task = asyncio.create_task(guarded())
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    deadline = time.perf_counter() + 30
    while len([n for n in sent if n in arrivals]) < len(sent) and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    reading.cancel()
    stream.writer.close()
    await sender.close()
    latencies = sorted((arrivals[n] - sent[n]) * 1000 for n in sent if n in arrivals)
    if not latencies:
        return {"p50": float("nan"), "p99": float("nan"), "received": 0}
    return {
        "p50": _percentile(latencies, 50),
        "p99": _percentile(latencies, 99),
        "max": latencies[-1],
        "received": len(latencies),
        "sent": len(sent),
    }


def _percentile(values: list[float], percent: float) -> float:
    index = min(len(values) - 1, max(0, round(percent / 100 * len(values)) - 1))
    return values[index]


def _report(results: list[Run], rows: int, seconds: float) -> None:
    def median(values: list[float]) -> float:
        return statistics.median(values)

    relay_rate = median([run.relay_rows_per_s for run in results])
    grpc_rate = median([run.grpc_events_per_s for run in results])
    print(f"\noutbox benchmark: {len(results)} run(s), {rows} rows each, {seconds:g} s paced at 1,000 rows/s")
    print(f"{'':34}{'relay (outbox)':>16}{'RecordActivities':>18}{'goal':>14}")
    print(f"{'throughput, rows/s (median)':34}{relay_rate:>16,.0f}{grpc_rate:>18,.0f}{'>= 20,000':>14}")
    backlog = median([run.relay_backlog_rows_per_s for run in results])
    print(f"{'relay alone, draining a backlog':34}{backlog:>16,.0f}")
    for name, goal in (("p50", TARGET_P50_MS), ("p99", TARGET_P99_MS)):
        relay_ms = median([run.relay_latency_ms[name] for run in results])
        grpc_ms = median([run.grpc_latency_ms[name] for run in results])
        print(f"{'commit → first byte ' + name + ', ms':34}{relay_ms:>16.1f}{grpc_ms:>18.1f}{'<= ' + f'{goal:g}':>14}")
    print(f"{'ratio relay / gRPC throughput':34}{relay_rate / grpc_rate:>16.2f}")
    open_p50 = median([run.relay_latency_open_transaction_ms["p50"] for run in results])
    open_p99 = median([run.relay_latency_open_transaction_ms["p99"] for run in results])
    print(f"{'relay p50 / p99 with a tx open, ms':34}{open_p50:>16.1f}{open_p99:>18.1f}")
