"""Reconnect storms under each way of authenticating: HS256 tokens, RS256 tokens from a JWKS, a session hook.

The case to design for is a deploy: every client of an edge comes back at once
to a **fresh** edge process, whose verified-token cache is empty, whose JWKS
must be fetched, and whose hook has answered nothing yet. Per round and per
mode (alternating, each going first in turn):

1. a fresh edge; every client connects (``offset=now``) — the cold connect;
2. every client drops; the edge is stopped; events are recorded while they are away;
3. another fresh edge; every client comes back with ``Last-Event-ID`` at once
   (500 connects in flight, a 503 retried after its ``Retry-After``) — **the storm**,
   with each client's replay checked exactly (gap-free).

The JWKS server publishes one RSA key (``kid`` bench-1); the hook server answers
after 5 ms (``--hook-ms``) with the user its ``session`` cookie names. Both run
in this process, on the load side's CPU. Streams accepted per second are
compared with HS256 in the same run: the goals are ≥ 70 % with the JWKS and
≥ 50 % with the hook, and no 5xx but intended 503s (retried).

    python -m benchmarks auth-storm --quick             # 3,000 clients, 1 round
    python -m benchmarks auth-storm --clients 10000 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from benchmarks._stack import set_niceness
from benchmarks.harness import Harness
from benchmarks.scenarios import Config, _connect_summary, _get, _wait_streams_closed

MODES = ("hs256", "jwks", "hook")
GOALS = {"jwks": 0.70, "hook": 0.50}
KID = "bench-1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="3,000 clients, 1 round")
    parser.add_argument("--clients", type=int, default=None, help="clients of each storm (default 10,000)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds of the three modes (default 2)")
    parser.add_argument("--hook-ms", type=float, default=5.0, help="milliseconds the session hook takes to answer")
    parser.add_argument("--edge-cpus", default="0", help="CPUs of the edge under test ('' for no pinning)")
    parser.add_argument("--load-cpus", default="1", help="CPUs of everything else ('' for no pinning)")
    parser.add_argument("--nice", type=int, default=0, help="niceness of every benchmark process (negative: root)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")


class AuthServers:
    """The identity provider's JWKS and the application's session hook: one small HTTP/1.1 server in this process.

    A bare asyncio protocol rather than a web framework: it shares the load side's CPU with the load
    generator, NATS and acl, and what is measured is the edge, not this stand-in for the application.
    """

    def __init__(self, public_jwk: dict[str, Any], hook_seconds: float) -> None:
        self.jwks_body = json.dumps({"keys": [public_jwk]}).encode()
        self.hook_seconds = hook_seconds
        self.jwks_requests = 0
        self.hook_requests = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def jwks_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks"

    @property
    def hook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/session"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _AuthProtocol(self), "127.0.0.1", 0, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def answer(self, path: bytes, body: bytes) -> bytes:
        if path == b"/jwks":
            self.jwks_requests += 1
            payload = self.jwks_body
        else:
            self.hook_requests += 1
            try:
                cookie = json.loads(body)["headers"].get("cookie", "")
            except (ValueError, KeyError, AttributeError):
                cookie = ""
            user = cookie.removeprefix("session=")
            payload = json.dumps({"user_id": user, "expires_at": time.time() + 3600}).encode()
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(payload)
        return head + payload


class _AuthProtocol(asyncio.Protocol):
    def __init__(self, servers: AuthServers) -> None:
        self.servers = servers
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            length = next(
                (int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:")), 0
            )
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            path = lines[0].split(b" ")[1]
            answer = self.servers.answer(path, rest[:length])
            delay = self.servers.hook_seconds if path != b"/jwks" else 0.0
            # The application's own work (a session lookup) takes `delay`; answers keep their order.
            asyncio.get_running_loop().call_later(delay, self._write, answer)

    def _write(self, answer: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)


def _modes(servers: AuthServers, private_pem: str) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """mode → (edge settings, client credentials)."""
    return {
        "hs256": ({}, {"kind": "hs256", "secret": ""}),
        "jwks": ({"JWKS_URL": servers.jwks_url}, {"kind": "rs256", "key_pem": private_pem, "kid": KID}),
        "hook": ({"AUTH_HOOK_URL": servers.hook_url}, {"kind": "cookie"}),
    }


async def _storm(
    harness: Harness, config: Config, clients: int, mode: str, env: dict[str, str], auth: dict[str, str]
) -> dict[str, Any]:
    await harness.init_clients(clients, auth=auth if auth["kind"] != "hs256" else None)
    first = await asyncio.to_thread(harness.start_edge, "userstream", 1, env)
    try:
        connected = await harness.connect(first, window=config.connect_window, resume=False)
        await harness.drop()
        await _wait_streams_closed(first)
    finally:
        await asyncio.to_thread(first.stop)
    assert harness.publisher is not None
    step = harness.next_step()
    await harness.begin(step)
    organizations = harness.population.organizations
    missed = await harness.publisher.publish(step, organizations * config.missed_per_org / 0.2, 0.2, tick=0.005)
    edge = await asyncio.to_thread(harness.start_edge, "userstream", 1, env)
    try:
        cpu, began = edge.cpu(), time.monotonic()
        storm = await harness.connect(edge, window=config.connect_window, resume=True)
        wall = max(1e-9, time.monotonic() - began)
        edge_cpu = edge.cpu() - cpu
        seen = await harness.finish(step, missed.per_org, timeout=60.0)
        metrics = await asyncio.to_thread(_get, f"http://{edge.address}/metrics")
        await harness.drop()
    finally:
        await asyncio.to_thread(edge.stop)
    gap_free = not (seen["missing"] or seen["extra"] or seen["foreign"] or seen["out_of_order"])
    summary = _connect_summary(storm, clients)
    server_errors = {status: n for status, n in storm["statuses"].items() if status.isdigit() and int(status) >= 500}
    result = {
        "mode": mode,
        "cold_connect": _connect_summary(connected, clients),
        "storm": summary,
        "gap_free": gap_free,
        "replayed": seen["deliveries"],
        "expected_replayed": harness.expected_deliveries(missed.per_org),
        "edge_cpu_cores": edge_cpu / wall,
        "edge_us_per_stream": edge_cpu * 1e6 / max(1, storm["offsets"]),
        "server_errors_final": server_errors,
        "hook_metrics": [line for line in metrics.splitlines() if line.startswith("userstream_edge_auth_hook")],
    }
    print(
        f"    {mode:<6} storm: {summary['resumed']:,}/{clients:,} resumed, accepted {summary['accepted_per_s']:,.0f}/s,"
        f" resumed {summary['resumed_per_s']:,.0f}/s, {result['edge_us_per_stream']:,.0f} µs edge CPU per stream;"
        f" statuses {storm['statuses']}, 503s retried {storm['retries']}; {'gap-free' if gap_free else 'GAPS'}"
        f"  (cold connect {result['cold_connect']['accepted_per_s']:,.0f}/s)",
        flush=True,
    )
    return result


def _median(runs: list[dict[str, Any]], mode: str, path: tuple[str, ...]) -> float | None:
    values = []
    for run in runs:
        if run["mode"] == mode:
            value: Any = run
            for key in path:
                value = value[key]
            values.append(value)
    return statistics.median(values) if values else None


def _summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    base = _median(runs, "hs256", ("storm", "accepted_per_s"))
    base_us = _median(runs, "hs256", ("edge_us_per_stream",))
    table: dict[str, Any] = {}
    for mode in MODES:
        rate = _median(runs, mode, ("storm", "accepted_per_s"))
        connect = _median(runs, mode, ("cold_connect", "accepted_per_s"))
        us = _median(runs, mode, ("edge_us_per_stream",))
        ratio = rate / base if rate is not None and base else None
        table[mode] = {
            "storm_accepted_per_s": rate,
            "cold_connect_accepted_per_s": connect,
            "ratio_to_hs256": ratio,
            "edge_us_per_stream": us,
            # What the edge could take on a core of its own, relative to HS256: CPU per stream, inverted.
            "capacity_ratio_to_hs256": base_us / us if base_us and us else None,
            "goal": GOALS.get(mode),
            "met": None if mode not in GOALS or ratio is None else ratio >= GOALS[mode],
            "all_gap_free": all(run["gap_free"] for run in runs if run["mode"] == mode),
            "all_resumed": all(
                run["storm"]["resumed"] == run["storm"]["clients"] for run in runs if run["mode"] == mode
            ),
        }
    return table


async def _run(args: argparse.Namespace, root: Path, results: dict[str, Any]) -> None:
    clients = args.clients or (3000 if args.quick else 10_000)
    rounds = args.rounds or (1 if args.quick else 2)
    config = Config(idle_clients=clients)
    cpus = os.cpu_count() or 1
    edge_cpus, load_cpus = ((args.edge_cpus or None), (args.load_cpus or None)) if cpus >= 2 else (None, None)
    if args.nice:
        set_niceness(args.nice)
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True) | {"kid": KID, "use": "sig", "alg": "RS256"}
    servers = AuthServers(public_jwk, args.hook_ms / 1000)
    await servers.start()
    harness = Harness(root, edge_cpus=edge_cpus, load_cpus=load_cpus)
    print(f"starting NATS, activity, acl; seeding {clients:,} users' memberships", flush=True)
    results["seed_seconds"] = await harness.start(clients)
    modes = _modes(servers, private_pem)
    try:
        for index in range(rounds):
            print(f"== reconnect storm to a fresh edge, {clients:,} clients, round {index + 1}/{rounds}", flush=True)
            for mode in MODES[index % 3 :] + MODES[: index % 3]:  # each mode goes first in turn
                env, auth = modes[mode]
                outcome = await _storm(harness, config, clients, mode, env, auth)
                outcome["round"] = index
                results["runs"].append(outcome)
    finally:
        await harness.stop()
        await servers.stop()
        results["jwks_requests"] = servers.jwks_requests
        results["hook_requests"] = servers.hook_requests


def main(args: argparse.Namespace) -> int:
    results: dict[str, Any] = {
        "benchmark": "auth-storm",
        "command": "python -m benchmarks auth-storm " + " ".join(sys.argv[2:]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hook_ms": args.hook_ms,
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="userstream-auth-bench-") as scratch:
        uvloop.run(_run(args, Path(scratch), results))
    results["summary"] = _summarize(results["runs"])
    print(
        "\nmode    storm accepted/s (median)  vs HS256  goal            edge µs/stream  capacity vs HS256"
        "  cold connect/s  gap-free"
    )
    for mode, row in results["summary"].items():
        ratio = "" if row["ratio_to_hs256"] is None else f"{row['ratio_to_hs256']:.0%}"
        capacity = "" if row["capacity_ratio_to_hs256"] is None else f"{row['capacity_ratio_to_hs256']:.0%}"
        goal = "" if row["goal"] is None else f"≥ {row['goal']:.0%} {'met' if row['met'] else 'NOT met'}"
        print(
            f"{mode:<8}{row['storm_accepted_per_s'] or 0:>16,.0f}{ratio:>18}  {goal:<16}"
            f"{row['edge_us_per_stream'] or 0:>10,.0f}{capacity:>17}{row['cold_connect_accepted_per_s'] or 0:>18,.0f}"
            f"  {row['all_gap_free'] and row['all_resumed']}"
        )
    print(f"JWKS fetched {results['jwks_requests']} times, hook called {results['hook_requests']} times")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    clean = all(row["all_gap_free"] and row["all_resumed"] for row in results["summary"].values())
    return 0 if clean else 1
