"""The load generator process: holds thousands of SSE connections and checks every one of them.

Run by the benchmark orchestrator (``benchmarks/harness.py``) as its own
process, pinned to its own CPUs where possible, and driven by JSON lines on
stdin (one reply line on stdout per command):

- ``init``     which clients this process plays (indices into the population) and the token secret;
- ``connect``  open every client's ``/me/stream`` (``resume``: with ``Last-Event-ID`` = its last cursor),
               at most ``window`` connects in flight, and wait for every ``offset`` event;
- ``begin``    start counting a step (the publisher tags each event with its step);
- ``finish``   given what was published per organization, wait until every client has exactly
               its share (or time out) and report losses, extras, order, latency;
- ``drop``     close every connection (the clients keep their last cursor);
- ``quit``.

    python -m benchmarks.loadgen      # normally started by the harness, not by hand
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import uvloop
from cryptography.hazmat.primitives import serialization

from benchmarks._client import Session, StreamClient
from benchmarks._population import Population
from userstream.tokens import issue_token

_POLL = 0.05
_ATTEMPTS = 3  # a 503 is retried, as clients do
_MAX_RETRY_WAIT = 2.0
_TOKEN_TTL = 6 * 3600


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class LoadGenerator:
    def __init__(self) -> None:
        self.session = Session()
        self.clients: list[StreamClient] = []
        self.tokens: list[str] = []
        self.host = "127.0.0.1"
        self.port = 0
        self._cpu_mark = _cpu_seconds()

    # -- commands -----------------------------------------------------------------------------------

    def init(
        self,
        secret: str,
        organizations: int,
        orgs_per_user: int,
        start: int,
        stop: int,
        step: int = 1,
        auth: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        population = Population(organizations, orgs_per_user)
        self.clients = []
        self.tokens = []
        credential = credentials(auth or {"kind": "hs256", "secret": secret})
        for index in range(start, stop, step):
            user = population.user(index)
            self.tokens.append(credential(user))
            self.clients.append(StreamClient(self.session, frozenset(population.orgs_of(index)), b""))
        return {"clients": len(self.clients)}

    async def connect(
        self, host: str, port: int, window: int, resume: bool, timeout: float, path: str = "/me/stream"
    ) -> dict[str, Any]:
        self.host, self.port = host, port
        loop = asyncio.get_running_loop()
        self.session.offsets = 0
        gate = asyncio.Semaphore(window)
        started = time.time()
        cpu = _cpu_seconds()

        retries = 0

        async def open_one(client: StreamClient, token: str) -> None:
            nonlocal retries
            cursor = str(client.last_cursor) if resume and client.last_cursor else None
            for attempt in range(_ATTEMPTS):
                client.reset_for_reconnect(_request(host, port, path, token, cursor))
                async with gate:
                    client.head_event = asyncio.Event()
                    try:
                        await loop.create_connection(lambda: client, host, port)
                    except OSError as exc:
                        client.connect_error = type(exc).__name__
                        client.ended = True
                        return
                    try:
                        await asyncio.wait_for(client.head_event.wait(), timeout)
                    except TimeoutError:
                        client.connect_error = "no response"
                if client.status != 503 or attempt == _ATTEMPTS - 1:
                    return
                # As a real client would: come back after the Retry-After the edge asked for (capped).
                retries += 1
                await asyncio.sleep(min(_MAX_RETRY_WAIT, float(client.retry_after or 1)))

        await asyncio.gather(
            *(open_one(client, token) for client, token in zip(self.clients, self.tokens, strict=True))
        )
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if all(c.offset_at is not None or c.ended or c.status not in (None, 200) for c in self.clients):
                break
            await asyncio.sleep(_POLL)
        statuses: dict[str, int] = {}
        for client in self.clients:
            key = str(client.status) if client.status is not None else (client.connect_error or "none")
            statuses[key] = statuses.get(key, 0) + 1
        accepted = [c.accepted_at for c in self.clients if c.status == 200 and c.accepted_at is not None]
        offsets = [c.offset_at for c in self.clients if c.offset_at is not None]
        errors = sorted({c.error_body[:200].decode(errors="replace") for c in self.clients if c.error_body})[:5]
        return {
            "clients": len(self.clients),
            "statuses": statuses,
            "accepted": len(accepted),
            "offsets": len(offsets),
            "resumed": sum(1 for c in self.clients if c.resumed),
            "started": started,
            "last_accepted": max(accepted, default=None),
            "last_offset": max(offsets, default=None),
            "accepted_times": sorted(t - started for t in accepted)[:: max(1, len(accepted) // 200)],
            "closed": _reasons(self.clients),
            "error_bodies": errors,
            "retries": retries,
            "cpu_s": _cpu_seconds() - cpu,
        }

    def begin(self, step: int) -> dict[str, Any]:
        self.session.begin(step)
        for client in self.clients:
            client.begin()
        self._cpu_mark = _cpu_seconds()
        return {"step": step}

    async def finish(self, step: int, published: dict[str, int], timeout: float) -> dict[str, Any]:
        assert step == self.session.step
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Every client that should be streaming: one that never got its `offset` still owes its events.
        live = [c for c in self.clients if c.status == 200 or c.offset_at is not None]
        missing = extra = 0
        while True:
            missing = extra = 0
            for client in live:
                short, over = client.shortfall(published)
                missing += short
                extra += over
            if missing == 0 or loop.time() >= deadline:
                break
            await asyncio.sleep(_POLL)
        session = self.session
        return {
            "step": step,
            "clients": len(live),
            "incomplete_clients": sum(1 for c in live if c.shortfall(published)[0]),
            "deliveries": session.histogram.count,
            "missing": missing,
            "extra": extra,
            "foreign": sum(c.foreign for c in self.clients),
            "out_of_order": sum(c.out_of_order for c in self.clients),
            "stale": sum(c.stale for c in self.clients),
            "ended": sum(1 for c in live if c.ended),
            "not_open": sum(1 for c in self.clients if c.offset_at is None),
            "closed": _reasons(live),
            "first_rx": session.first_rx or None,
            "last_rx": session.last_rx or None,
            "histogram": session.histogram.to_json(),
            "cpu_s": _cpu_seconds() - self._cpu_mark,
        }

    async def drop(self, timeout: float = 10.0) -> dict[str, Any]:
        for client in self.clients:
            if client.transport is not None:
                client.transport.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(not c.ended for c in self.clients if c.status is not None) and loop.time() < deadline:  # noqa: ASYNC110  # polls many clients
            await asyncio.sleep(_POLL)
        return {"open": sum(1 for c in self.clients if not c.ended and c.status is not None)}


def credentials(auth: dict[str, str]) -> Callable[[str], str]:
    """The header line a user's client sends to prove who it is.

    ``{"kind": "hs256", "secret"}``: an HS256 token; ``{"kind": "rs256", "key_pem", "kid"}``: an RS256
    token signed with that private key (the edge finds its public key in a JWKS); ``{"kind": "cookie"}``:
    a session cookie ``session=<user>`` and no token (the edge asks its session hook).
    """
    kind = auth["kind"]
    if kind == "hs256":
        return lambda user: f"Authorization: Bearer {issue_token(user, auth['secret'], _TOKEN_TTL)}"
    if kind == "rs256":
        key = serialization.load_pem_private_key(auth["key_pem"].encode(), password=None)
        return lambda user: (
            "Authorization: Bearer " + issue_token(user, key, _TOKEN_TTL, algorithm="RS256", kid=auth["kid"])
        )
    if kind == "cookie":
        return lambda user: f"Cookie: session={user}"
    raise ValueError(f"unknown credentials {kind!r}")


def _request(host: str, port: int, path: str, credential: str, cursor: str | None) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Accept: text/event-stream",
        credential,
    ]
    if cursor is not None:
        lines.append(f"Last-Event-ID: {cursor}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _reasons(clients: list[StreamClient]) -> dict[str, int]:
    reasons: dict[str, int] = {}
    for client in clients:
        if client.close_reason is not None:
            reasons[client.close_reason] = reasons.get(client.close_reason, 0) + 1
    return reasons


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    generator = LoadGenerator()
    while line := await reader.readline():
        command = json.loads(line)
        name = command.pop("cmd")
        try:
            if name == "quit":
                await generator.drop(timeout=2.0)
                _reply({"ok": True})
                return
            result = getattr(generator, name)(**command)
            if asyncio.iscoroutine(result):
                result = await result
            _reply({"ok": True, **result})
        except Exception as exc:  # the harness reports it; the process stays up for the next command
            _reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    uvloop.run(_serve())
