"""What every edge scenario needs: the shared backbone, the publisher, load-generator processes, an edge.

The orchestrator (this process) publishes and decides; the load generators
(``benchmarks/loadgen.py``, separate processes) hold and check the
connections; the edges and the backbone are separate processes too. With
``load_cpus`` / ``edge_cpus`` the edge under test gets its own core and
everything else shares the other one.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._histogram import Histogram
from benchmarks._population import Population
from benchmarks._publisher import Publisher
from benchmarks._stack import (
    SECRET,
    Backbone,
    Service,
    cpu_seconds,
    machine_busy_seconds,
    pinned,
    prioritize,
    start_edge,
)

_REPOSITORY = Path(__file__).resolve().parent.parent


class LoadGenProcess:
    """One ``python -m benchmarks.loadgen``, driven by JSON lines."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, cpus: str | None, root: Path, index: int) -> LoadGenProcess:
        command = pinned([sys.executable, "-m", "benchmarks.loadgen"], cpus)
        log = (root / f"loadgen-{index}.log").open("ab")  # once per run, before any load
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            cwd=_REPOSITORY,
            limit=1 << 24,
            start_new_session=True,  # its own autogroup: see _stack.set_niceness
        )
        prioritize(process.pid)
        return cls(process)

    async def call(self, cmd: str, **arguments: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write((json.dumps({"cmd": cmd, **arguments}) + "\n").encode())
        await self.process.stdin.drain()
        line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the load generator exited during {cmd!r}")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"load generator {cmd!r} failed: {reply.get('error')}")
        return reply

    async def stop(self) -> None:
        try:
            await asyncio.wait_for(self.call("quit"), 10)
        except (RuntimeError, TimeoutError, BrokenPipeError, ConnectionResetError):
            self.process.kill()
        await self.process.wait()


@dataclass
class StepResult:
    """One publishing step against one edge, as the load generators saw it."""

    offered_per_s: float  # deliveries/s the publisher aimed at
    published_events: int
    publish_errors: int
    expected: int  # deliveries the connected clients should receive
    deliveries: int
    missing: int
    extra: int
    foreign: int
    out_of_order: int
    closed: dict[str, int]
    delivered_per_s: float
    latency: Histogram
    edge_cpu: float  # cores the edge used during the step
    loadgen_cpu: float
    publisher_lag_ms: float
    seconds: float
    ack: Histogram  # the publisher's RecordActivities round trips
    foreign_cpu: float  # cores busy with processes outside this benchmark (other work on a shared machine)
    edge_cpu_seconds: float  # from the step's first publish until every delivery was checked
    edge_kernel_seconds: float  # the part of it spent in the kernel (socket writes, on loopback)
    load_cpu: float = 0.0  # cores the load side used (NATS, activity, acl, load generators, publisher)

    @property
    def clean(self) -> bool:
        return (
            self.missing == 0
            and self.extra == 0
            and self.foreign == 0
            and self.publish_errors == 0
            and not self.closed
            and self.deliveries == self.expected
        )

    def sustained(self, p99_limit_ms: float) -> bool:
        p99 = self.latency.percentile(0.99)
        return self.clean and p99 is not None and p99 <= p99_limit_ms

    def to_json(self) -> dict[str, Any]:
        return {
            "offered_per_s": self.offered_per_s,
            "published_events": self.published_events,
            "publish_errors": self.publish_errors,
            "expected": self.expected,
            "deliveries": self.deliveries,
            "missing": self.missing,
            "extra": self.extra,
            "foreign": self.foreign,
            "out_of_order": self.out_of_order,
            "closed": self.closed,
            "delivered_per_s": self.delivered_per_s,
            "latency": self.latency.summary(),
            "histogram": self.latency.to_json(),
            "edge_cpu": self.edge_cpu,
            "loadgen_cpu": self.loadgen_cpu,
            "publisher_lag_ms": self.publisher_lag_ms,
            "seconds": self.seconds,
            "record_latency": self.ack.summary(),
            "foreign_cpu": self.foreign_cpu,
            "edge_us_per_delivery": self.edge_us_per_delivery,
            "edge_kernel_share": self.edge_kernel_seconds / self.edge_cpu_seconds if self.edge_cpu_seconds else None,
            "load_cpu": self.load_cpu,
        }

    @property
    def edge_us_per_delivery(self) -> float | None:
        """The edge's CPU time per delivery: what bounds it on a core of its own, whatever else runs."""
        return self.edge_cpu_seconds * 1e6 / self.deliveries if self.deliveries else None


class Harness:
    def __init__(
        self,
        root: Path,
        *,
        edge_cpus: str | None,
        load_cpus: str | None,
        loadgens: int = 1,
        population: Population | None = None,
    ) -> None:
        self.root = root
        self.edge_cpus = edge_cpus
        self.load_cpus = load_cpus
        self.loadgen_count = loadgens
        self.population = population or Population()
        self.backbone = Backbone(root, load_cpus)
        self.loadgens: list[LoadGenProcess] = []
        self.publisher: Publisher | None = None
        self.seeded_users = 0
        self.clients = 0
        self._step = 0
        self._edge_pid_cpu: Service | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self, users: int) -> float:
        """Start the backbone and the load generators; make ``users`` members of their orgs. Seconds to seed."""
        if self.load_cpus:
            os.sched_setaffinity(0, {int(cpu) for cpu in self.load_cpus.split(",")})
        await asyncio.to_thread(self.backbone.start)
        self.publisher = Publisher(self.backbone.activity.address, self.population)
        self.loadgens = [await LoadGenProcess.start(self.load_cpus, self.root, i) for i in range(self.loadgen_count)]
        seconds = await self.publisher.seed_memberships(users, self.backbone.acl.address)
        self.seeded_users = users
        return seconds

    async def stop(self) -> None:
        for loadgen in self.loadgens:
            await loadgen.stop()
        if self.publisher is not None:
            await self.publisher.close()
        await asyncio.to_thread(self.backbone.stop)

    def start_edge(
        self,
        kind: str,
        workers: int = 1,
        *,
        tag: str = "",
        env: dict[str, str] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> Service:
        cpus = self.edge_cpus
        if workers > 1 and cpus is not None:
            cpus = ",".join(str(cpu) for cpu in range(os.cpu_count() or 1))
        return start_edge(kind, self.backbone, cpus, workers, tag=tag, settings=env, extra_env=extra_env)

    # -- clients -----------------------------------------------------------------------------------

    async def _all(self, cmd: str, **arguments: Any) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(loadgen.call(cmd, **arguments) for loadgen in self.loadgens)))

    async def init_clients(self, count: int, auth: dict[str, str] | None = None) -> None:
        """Clients ``0..count-1``, split across the load generators.

        ``auth``: how they prove who they are (``benchmarks.loadgen.credentials``); HS256 tokens by default.
        """
        if count > self.seeded_users:
            raise ValueError(f"only {self.seeded_users} users were seeded")
        step = len(self.loadgens)
        await asyncio.gather(
            *(
                loadgen.call(
                    "init",
                    secret=SECRET,
                    organizations=self.population.organizations,
                    orgs_per_user=self.population.orgs_per_user,
                    start=index,
                    stop=count,
                    step=step,
                    auth=auth,
                )
                for index, loadgen in enumerate(self.loadgens)
            )
        )
        self.clients = count

    async def connect(self, edge: Service, *, window: int, resume: bool, timeout: float = 120.0) -> dict[str, Any]:
        host, port = edge.address.split(":")
        replies = await self._all("connect", host=host, port=int(port), window=window, resume=resume, timeout=timeout)
        started = min(reply["started"] for reply in replies)
        accepted = [reply["last_accepted"] for reply in replies if reply["last_accepted"]]
        offsets = [reply["last_offset"] for reply in replies if reply["last_offset"]]
        statuses: dict[str, int] = {}
        closed: dict[str, int] = {}
        for reply in replies:
            for key, value in reply["statuses"].items():
                statuses[key] = statuses.get(key, 0) + value
            for key, value in reply["closed"].items():
                closed[key] = closed.get(key, 0) + value
        return {
            "clients": sum(reply["clients"] for reply in replies),
            "accepted": sum(reply["accepted"] for reply in replies),
            "offsets": sum(reply["offsets"] for reply in replies),
            "resumed": sum(reply["resumed"] for reply in replies),
            "statuses": statuses,
            "closed": closed,
            "accept_seconds": (max(accepted) - started) if accepted else None,
            "offset_seconds": (max(offsets) - started) if offsets else None,
            "accepted_times": replies[0]["accepted_times"],
            "error_bodies": [body for reply in replies for body in reply["error_bodies"]][:5],
            "loadgen_cpu_s": sum(reply["cpu_s"] for reply in replies),
            "retries": sum(reply["retries"] for reply in replies),
        }

    async def drop(self) -> None:
        await self._all("drop")

    # -- publishing steps --------------------------------------------------------------------------

    def next_step(self) -> int:
        self._step += 1
        return self._step

    async def begin(self, step: int) -> None:
        await self._all("begin", step=step)

    async def finish(self, step: int, published: dict[str, int], timeout: float) -> dict[str, Any]:
        replies = await self._all("finish", step=step, published=published, timeout=timeout)
        merged: dict[str, Any] = {
            "histogram": Histogram.merged(Histogram.from_json(reply["histogram"]) for reply in replies),
            "first_rx": min((r["first_rx"] for r in replies if r["first_rx"]), default=None),
            "last_rx": max((r["last_rx"] for r in replies if r["last_rx"]), default=None),
            "closed": {},
        }
        keys = (
            "deliveries",
            "missing",
            "extra",
            "foreign",
            "out_of_order",
            "stale",
            "ended",
            "cpu_s",
            "clients",
            "not_open",
        )
        for key in keys:
            merged[key] = sum(reply[key] for reply in replies)
        for reply in replies:
            for reason, count in reply["closed"].items():
                merged["closed"][reason] = merged["closed"].get(reason, 0) + count
        return merged

    def expected_deliveries(self, published: dict[str, int]) -> int:
        members = self.population.members_per_org(self.clients)
        return sum(members.get(org, 0) * count for org, count in published.items())

    async def step(
        self, edge: Service, deliveries_per_s: float, duration: float, drain: float, tick: float
    ) -> StepResult:
        """Publish for ``duration`` at ``deliveries_per_s`` offered to the connected clients; check everything."""
        assert self.publisher is not None
        members = self.population.members_per_org(self.clients)
        fanout = sum(members.values()) / len(members)
        step = self.next_step()
        await self.begin(step)
        edge_cpu = edge_cpu_start = edge.cpu()
        edge_kernel_start = edge.kernel_cpu()
        ours, busy, load = self.our_cpu(edge), machine_busy_seconds(), self.our_cpu()
        wall = time.monotonic()
        published = await self.publisher.publish(step, deliveries_per_s / fanout, duration, tick=tick)
        wall = max(1e-9, time.monotonic() - wall)
        edge_cpu = (edge.cpu() - edge_cpu) / wall
        foreign = ((machine_busy_seconds() - busy) - (self.our_cpu(edge) - ours)) / wall
        load = (self.our_cpu() - load) / wall
        seen = await self.finish(step, published.per_org, drain)
        edge_cpu_seconds = edge.cpu() - edge_cpu_start
        edge_kernel_seconds = edge.kernel_cpu() - edge_kernel_start
        histogram: Histogram = seen["histogram"]
        first, last = published.first_send, seen["last_rx"] or published.last_send
        return StepResult(
            offered_per_s=deliveries_per_s,
            published_events=published.events,
            publish_errors=published.errors,
            expected=self.expected_deliveries(published.per_org),
            deliveries=seen["deliveries"],
            missing=seen["missing"],
            extra=seen["extra"],
            foreign=seen["foreign"],
            out_of_order=seen["out_of_order"],
            closed=seen["closed"],
            delivered_per_s=seen["deliveries"] / max(1e-9, last - first),
            latency=histogram,
            edge_cpu=edge_cpu,
            loadgen_cpu=seen["cpu_s"] / max(1e-9, last - first),
            publisher_lag_ms=published.max_lag_ms,
            seconds=last - first,
            ack=published.ack,
            foreign_cpu=max(0.0, foreign),
            edge_cpu_seconds=edge_cpu_seconds,
            edge_kernel_seconds=edge_kernel_seconds,
            load_cpu=load,
        )

    def our_cpu(self, edge: Service | None = None) -> float:
        """CPU seconds of every process of this benchmark: backbone, load generators, this one, the edge."""
        pids = [os.getpid(), *self.backbone.pids(), *(loadgen.process.pid for loadgen in self.loadgens)]
        return cpu_seconds(pids) + (edge.cpu() if edge is not None else 0.0)

    async def foreign_load(self, seconds: float = 1.0) -> float:
        """Cores used by processes outside this benchmark over the next ``seconds``."""
        ours, busy = self.our_cpu(), machine_busy_seconds()
        await asyncio.sleep(seconds)
        return max(0.0, (machine_busy_seconds() - busy - (self.our_cpu() - ours)) / seconds)

    async def wait_quiet(self, limit: float, timeout: float) -> float:
        """Wait (up to ``timeout`` s) until other work on the machine uses under ``limit`` cores; returns it."""
        deadline = time.monotonic() + timeout
        foreign = await self.foreign_load()
        while foreign > limit and time.monotonic() < deadline:
            foreign = await self.foreign_load()
        return foreign
