"""The naive baseline edge: the straightforward way to serve ``/me/stream``, for comparison only.

What a first implementation would do, on the same server stack as the real
edge (Litestar on uvicorn with uvloop and httptools), the same NATS, the same
acl and the same tokens and cursors:

- per connection, one acl ``GetSubject`` and **one NATS subscription per
  channel** (``live.user.<id>`` and one ``live.org.<id>`` per membership), each
  with its own callback feeding the connection's ``asyncio.Queue``;
- per connection and event, ``json.loads`` of the stored body, the permission
  check, and ``json.dumps`` of the change payload (**JSON per connection**);
- Litestar's ``ServerSentEvent`` response over an async generator **yielding one
  event at a time** (one ASGI ``send`` per event);
- resume: subscribe, then read each channel's missed range from the log
  (``LogReader``), merge by sequence, then the live queue (skipping what the
  replay covered).

It deliberately lacks what the benchmarks do not exercise (live membership
changes, gap repair, slow-consumer limits, per-user caps, drain) — and its
per-subscription callbacks may reorder events of different channels, which the
load generator reports as ``out_of_order``.

    USERSTREAM_NATS_URL=… USERSTREAM_ACL_ADDR=… USERSTREAM_JWT_SECRET=… \\
        python -m benchmarks.naive_edge --port 8001 [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from litestar import Litestar, Request, get
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage
from nats.aio.client import Client
from nats.aio.msg import Msg

from userstream.cursor import CursorCodec, CursorError, parse_cursor
from userstream.eventlog.reader import LogReader, StoredMessage
from userstream.eventlog.stream import log_id_of
from userstream.eventlog.subjects import SEQUENCE_HEADER
from userstream.nats_connection import NatsConnection
from userstream.permissions import may_read_entity
from userstream.policy import Policy, default_policy
from userstream.rpc.acl import AclClient
from userstream.settings import NatsSettings
from userstream.tokens import TokenError, verify_token

PING_INTERVAL = 15.0
RETRY_MS = 3000
STREAM = "ACTIVITY"


@dataclass
class Naive:
    nats: NatsConnection
    client: Client
    reader: LogReader
    acl: AclClient
    codec: CursorCodec
    policy: Policy
    secret: str


@asynccontextmanager
async def _lifespan(app: Litestar) -> AsyncIterator[None]:
    connection = NatsConnection(NatsSettings(servers=tuple(os.environ["USERSTREAM_NATS_URL"].split(","))), "naive-edge")
    client = await connection.connect()
    info = await connection.manager.stream_info(STREAM)
    acl = AclClient(os.environ["USERSTREAM_ACL_ADDR"], timeout=5.0)
    app.state.naive = Naive(
        connection,
        client,
        LogReader(connection, STREAM),
        acl,
        CursorCodec(log_id_of(info)),
        default_policy(),
        os.environ["USERSTREAM_JWT_SECRET"],
    )
    try:
        yield
    finally:
        await acl.close()
        await connection.close()


def _token(request: Request[Any, Any, Any]) -> str:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query_params.get("access_token", "")


@get("/me/stream")
async def me_stream(request: Request[Any, Any, Any]) -> ServerSentEvent:
    naive: Naive = request.app.state.naive
    try:
        principal = verify_token(_token(request), naive.secret)
    except TokenError as exc:
        raise NotAuthorizedException(str(exc)) from None
    text = request.headers.get("last-event-id") or request.query_params.get("offset") or "now"
    after = None
    if text != "now":
        try:
            after = parse_cursor(text).sequence
        except CursorError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
    subject = await naive.acl.get_subject(principal.user_id, at_cursor=text if after is not None else "now")
    channels = [f"user.{principal.user_id}", *(f"org.{org}" for org in subject.memberships)]
    queue: asyncio.Queue[Msg] = asyncio.Queue()

    async def on_message(message: Msg) -> None:
        queue.put_nowait(message)

    subscriptions = [await naive.client.subscribe(f"live.{channel}", cb=on_message) for channel in channels]
    start = after if after is not None else parse_cursor(subject.cursor).sequence
    connection = _Connection(naive, subject.system_role, dict(subject.memberships))
    return ServerSentEvent(connection.events(channels, start, after, queue, subscriptions))


class _Connection:
    """One stream's state: its user's role and memberships."""

    def __init__(self, naive: Naive, system_role: str, memberships: dict[str, str]) -> None:
        self.naive = naive
        self.system_role = system_role
        self.memberships = memberships

    async def events(
        self, channels: list[str], start: int, after: int | None, queue: asyncio.Queue[Msg], subscriptions: list[Any]
    ) -> AsyncIterator[ServerSentEventMessage]:
        try:
            yield ServerSentEventMessage(retry=RETRY_MS, data=None)
            position = start
            if after is not None:
                async for sequence, message in self._replay(channels, after):
                    position = sequence
                    if message is not None:
                        yield message
            cursor = self.naive.codec.encode(position)
            offset = json.dumps({"cursor": cursor, "resumed": after is not None})
            yield ServerSentEventMessage(event="offset", id=cursor, data=offset)
            while True:
                try:
                    live = await asyncio.wait_for(queue.get(), PING_INTERVAL)
                except TimeoutError:
                    yield ServerSentEventMessage(event="ping", data="{}")
                    continue
                sequence = int((live.headers or {})[SEQUENCE_HEADER])
                if sequence <= position:
                    continue  # covered by the replay
                message = self._change(sequence, live.data)
                if message is not None:
                    yield message
        finally:
            with anyio.CancelScope(shield=True):
                for subscription in subscriptions:
                    await subscription.unsubscribe()

    async def _replay(
        self, channels: list[str], after: int
    ) -> AsyncIterator[tuple[int, ServerSentEventMessage | None]]:
        reader = self.naive.reader
        ranges: list[list[StoredMessage]] = []
        for channel in channels:
            until = await reader.last_sequence(channel)
            ranges.append(await reader.read(channel, after, until))
        for stored in heapq.merge(*ranges, key=lambda item: item.sequence):
            yield stored.sequence, self._change(stored.sequence, stored.data)

    def _change(self, sequence: int, data: bytes) -> ServerSentEventMessage | None:
        body: dict[str, Any] = json.loads(data)
        if body.get("resourceType") != "membership":
            role = self.memberships.get(body["organizationId"])
            if not may_read_entity(self.naive.policy, self.system_role, role, body.get("entityType") or ""):
                return None
        cursor = self.naive.codec.encode(sequence)
        payload = {"activityId": cursor, **body}
        return ServerSentEventMessage(event="change", id=cursor, data=json.dumps(payload, separators=(",", ":")))


def create_app() -> Litestar:
    return Litestar(route_handlers=[me_stream], lifespan=[_lifespan], openapi_config=None, logging_config=None)


def main() -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description="the naive baseline edge (benchmarks only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        "benchmarks.naive_edge:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=1,
        backlog=4096,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
