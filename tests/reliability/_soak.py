"""One oracle-checked run: clients on every edge, a seeded workload with churn, disconnects, and optional faults.

The run: set up memberships → open one stream per user (plus a second tab for
some, the public stream, one slow reader) → record the workload in batches while
clients are dropped at random moments (some reconnect to another edge), late
clients join (at ``now`` and from an old cursor), and a fault, if any, strikes
→ record one marker event everyone may see → wait until every client has it →
read the whole log back from JetStream → the oracle judges every client.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from tests.reliability._client import PayloadStore, StreamClient
from tests.reliability._deployment import Deployment
from tests.reliability._readback import log_id_of, position_of, read_log
from tests.reliability._workload import Shape, Workload
from tests.reliability.oracle import LoggedEvent, Oracle, Report

# Seconds every client gets to receive the marker once the workload is done.
MARKER_TIMEOUT = 60.0
OPEN_TIMEOUT = 30.0


@dataclass(frozen=True)
class Chaos:
    # mean seconds between two forced disconnects of a random client (0: none)
    drop_every: float = 0.3
    # share of forced disconnects after which the client reconnects to another edge
    move_share: float = 0.5
    # users whose stream starts mid-run (half at `now`, half from an older cursor)
    late_clients: int = 4
    # users with a second stream open (a second tab)
    tabs: int = 2
    slow_client: bool = True
    public_client: bool = True


@dataclass
class Fault:
    """Something that goes wrong once the workload has done ``at`` of its events; runs beside the workload."""

    name: str
    at: float
    action: Callable[[RunContext], Coroutine[Any, Any, None]]


@dataclass
class RunContext:
    deployment: Deployment
    workload: Workload
    clients: list[StreamClient]
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    report: Report
    log: list[LoggedEvent]
    clients: list[StreamClient]
    workload: Workload
    seconds: float
    drops: int
    moves: int
    recorded_twice: list[str]
    missing_from_log: list[str]
    keys_missing: list[str]
    notes: dict[str, Any]
    after_deletion: list[int] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Everything besides the oracle's verdicts that must be empty."""
        found = [f"{client.name}: {problem}" for client in self.clients for problem in client.problems]
        found += [f"{client.name}: must-refetch {client.refetches}" for client in self.clients if client.refetches]
        found += [
            f"{client.name}: HTTP {status}"
            for client in self.clients
            for status in client.statuses
            if status >= 500 and status != 503
        ]
        if self.recorded_twice:
            found.append(f"idempotency keys recorded twice: {self.recorded_twice[:5]}")
        if self.missing_from_log:
            found.append(f"acknowledged cursors missing from the log: {self.missing_from_log[:5]}")
        if self.keys_missing:
            found.append(f"recorded activities missing from the log: {self.keys_missing[:5]}")
        refused_but_logged = [key for key in self.workload.refused_keys if key in {e.msg_id for e in self.log}]
        if refused_but_logged:
            found.append(f"refused writes found in the log: {refused_but_logged[:5]}")
        if self.after_deletion:
            found.append(f"events of deleted organizations after their deletion: {self.after_deletion[:5]}")
        return found

    def diagnose(self, limit: int = 3) -> str:
        """For the first failing clients: their membership events, what they missed or got wrongly, their sessions."""
        by_position = {entry.position: entry for entry in self.log}
        lines: list[str] = []
        for verdict in [verdict for verdict in self.report.verdicts if not verdict.ok][:limit]:
            client = next(client for client in self.clients if client.name == verdict.name)
            lines.append(f"== {verdict.summary()}; window ({client.after}, end]")
            lines += [
                f"   membership  {entry.position} {entry.body.decode()[:160]}"
                for entry in self.log
                if entry.subject == f"user.{client.user_id}"
            ]
            wrong = verdict.lost[:8] + verdict.leaked[:8] + verdict.duplicated[:4] + verdict.out_of_order[:4]
            lines += [f"   event       {p} {by_position[p].body.decode()[:120]}" for p in sorted(set(wrong))]
            lines += [f"   session     {session}" for session in client.sessions[-12:]]
        return "\n".join(lines)

    def figures(self) -> dict[str, Any]:
        closes: Counter[str] = Counter()
        statuses: Counter[int] = Counter()
        for client in self.clients:
            closes.update(client.closes)
            statuses.update(client.statuses)
        sessions = sum(len(client.sessions) for client in self.clients)
        return {
            "seconds": round(self.seconds, 1),
            "log events": len(self.log),
            "recorded by the workload": self.workload.recorded,
            "batches": self.workload.batches,
            "resent batches (all duplicates)": self.workload.duplicate_checks,
            "membership changes": {k: v for k, v in self.workload.stats.items() if "membership" in k or k in _ACL_OPS},
            "calls retried after UNAVAILABLE": self.workload.stats["calls retried after UNAVAILABLE"],
            "organizations deleted": self.workload.stats["organization.deleted"],
            "writes refused after a deletion": self.workload.stats["refused after deletion"],
            "events after a deletion in the log": len(self.after_deletion),
            "clients": len(self.clients),
            "sessions": sessions,
            "forced disconnects": self.drops,
            "moved to another edge": self.moves,
            "close reasons": dict(closes),
            # A cut-off reader often never sees its `close` (the edge drops the socket after the grace period).
            "slow reader sessions ended by": [
                Counter(session.ended_by or "the end of the run" for session in client.sessions)
                for client in self.clients
                if "(slow)" in client.name
            ],
            "http statuses": dict(statuses),
            **self.report.totals(),
            **self.notes,
        }


_ACL_OPS = {"grant", "revoke", "role change", "grant: already a member", "revoke: not a member"}


async def run(
    deployment: Deployment,
    shape: Shape,
    *,
    seed: int,
    chaos: Chaos = Chaos(),
    fault: Fault | None = None,
    outbox: tuple[str, float] | None = None,
) -> RunResult:
    """``outbox`` = (DSN, share): that share of the batches goes through the PostgreSQL outbox and a relay."""
    started = time.monotonic()
    rng = random.Random(seed ^ 0x5EED)
    activity = deployment.activity_client
    workload = Workload(shape, seed, activity, deployment.acl_client, run_id=f"r{seed}")
    if outbox is not None:
        workload.outbox_dsn, workload.outbox_share = outbox
    origin = await activity.get_cursor()  # before anything of this run: a late client replays it all
    await workload.setup()
    store = PayloadStore()
    clients, late = _clients(deployment, workload, chaos, store, rng)
    for client in clients:
        client.run()
    await _all_open(clients)
    context = RunContext(deployment, workload, clients)
    dropper = _Dropper(clients, chaos, rng, len(deployment.edges))
    chaos_task = asyncio.get_running_loop().create_task(dropper.run())
    fault_task: asyncio.Task[None] | None = None
    try:
        while not workload.done:
            await workload.step()
            progress = workload.recorded / shape.events
            if fault is not None and fault_task is None and progress >= fault.at:
                fault_task = asyncio.get_running_loop().create_task(fault.action(context))
            while late and progress >= late[0][0]:
                _, client = late.pop(0)
                if client.start == "origin":
                    client.start = origin
                elif client.start == "recent":
                    client.start = workload.cursors[max(0, len(workload.cursors) - 5)]
                clients.append(client)
                client.run()
        if fault_task is not None:
            await fault_task
    finally:
        chaos_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await chaos_task
    for client in clients:
        client.slow = False  # the slow reader recovers: it must still end up with everything
    await workload.outbox_drained()
    marker = await workload.marker()
    end = position_of(marker)
    try:
        await asyncio.gather(*(client.wait_for(end, MARKER_TIMEOUT) for client in clients))
    finally:
        for client in clients:
            await client.stop()
    log = await read_log(deployment.nats_url, log_id_of(marker))
    oracle = Oracle(deployment.policy, log)
    report = oracle.check_all(client.observation(until=end) for client in clients)
    keys = Counter(entry.msg_id for entry in log if entry.msg_id is not None)
    logged = {entry.cursor for entry in log}
    return RunResult(
        report=report,
        log=log,
        clients=clients,
        workload=workload,
        seconds=time.monotonic() - started,
        drops=dropper.drops,
        moves=dropper.moves,
        recorded_twice=[key for key, count in keys.items() if count > 1],
        missing_from_log=[cursor for cursor in workload.cursors if cursor not in logged],
        keys_missing=[key for key in workload.keys if key not in keys],
        notes=context.notes,
        after_deletion=oracle.after_deletion(),
    )


def _clients(
    deployment: Deployment, workload: Workload, chaos: Chaos, store: PayloadStore, rng: random.Random
) -> tuple[list[StreamClient], list[tuple[float, StreamClient]]]:
    edges = deployment.edge_urls

    def client(user: str | None, name: str, index: int, **options: Any) -> StreamClient:
        return StreamClient(
            name=name,
            user_id=user,
            edges=edges,
            headers=(lambda: deployment.auth(user)) if user is not None else dict,
            store=store,
            system_role="admin" if user == workload.admin else "user",
            edge=index % len(edges),
            **options,
        )

    late_users = set(workload.users[-chaos.late_clients :]) if chaos.late_clients else set()
    clients: list[StreamClient] = []
    late: list[tuple[float, StreamClient]] = []
    for index, user in enumerate(workload.users):
        if user in late_users:
            start = "origin" if len(late) % 2 else "recent" if len(late) % 4 == 2 else None
            moment = 0.2 + 0.6 * len(late) / max(1, chaos.late_clients)
            late.append((moment, client(user, f"{user}(late,{start or 'now'})", index, start=start)))
            continue
        slow = chaos.slow_client and index == 1
        clients.append(client(user, f"{user}{'(slow)' if slow else ''}", index, slow=slow))
    for tab in range(chaos.tabs):
        user = workload.users[2 + tab]
        clients.append(client(user, f"{user}(tab 2)", tab + 1))
    if chaos.public_client:
        clients.append(client(None, "public", 0))
    rng.shuffle(late)
    late.sort(key=lambda item: item[0])
    return clients, late


async def _all_open(clients: list[StreamClient]) -> None:
    deadline = asyncio.get_running_loop().time() + OPEN_TIMEOUT
    while any(client.after is None for client in clients):
        if asyncio.get_running_loop().time() > deadline:
            waiting = [client.name for client in clients if client.after is None]
            raise TimeoutError(f"streams not open: {waiting}")
        await asyncio.sleep(0.05)


@dataclass
class _Dropper:
    """Cuts a random client's connection now and then; some reconnect to another edge."""

    clients: list[StreamClient]
    chaos: Chaos
    rng: random.Random
    edges: int
    drops: int = 0
    moves: int = 0

    async def run(self) -> None:
        if not self.chaos.drop_every:
            return
        while True:
            await asyncio.sleep(self.rng.expovariate(1 / self.chaos.drop_every))
            client = self.rng.choice(self.clients)
            if client.slow:
                continue  # it must stay connected long enough to fall behind and be cut off
            if self.edges > 1 and self.rng.random() < self.chaos.move_share:
                client.drop(edge=(client.edge + self.rng.randint(1, self.edges - 1)) % self.edges)
                self.moves += 1
            else:
                client.drop()
            self.drops += 1
