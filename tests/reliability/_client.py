"""A stream client that behaves like a careful browser: it keeps its last cursor and resumes with it.

It speaks raw HTTP/1.1 over a socket (chunked SSE parsed incrementally, so
thousands of events per second cost little), reconnects after any end of a
session — close, network drop, edge crash, 503 — with ``Last-Event-ID``, and
can be told to drop its connection or to move to another edge at any moment.
What it received (cursor positions in arrival order, one payload per position)
is what the oracle judges.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tests.reliability._readback import position_of
from tests.reliability.oracle import Observation

# Seconds to wait before reconnecting after a refusal (503, 429) or a failed connect.
RETRY_WAIT = 0.1
CONNECT_TIMEOUT = 5.0
# The slow client's reads: this many bytes, then this pause; its socket buffer is this small.
SLOW_READ_BYTES = 512
SLOW_READ_PAUSE = 0.05
SLOW_RCVBUF = 4096


class PayloadStore:
    """One copy of each event's payload for all clients (most events reach many of them)."""

    def __init__(self) -> None:
        self.first: dict[int, bytes] = {}

    def keep(self, position: int, payload: bytes, variants: dict[int, bytes]) -> None:
        known = self.first.setdefault(position, payload)
        if known != payload:
            variants[position] = payload


@dataclass
class Session:
    edge: str
    sent_cursor: str | None = None
    status: int = 0
    offset: dict[str, object] | None = None
    changes: int = 0
    first: int | None = None  # positions of the first and last change received
    last: int | None = None
    ended_by: str = ""


@dataclass
class StreamClient:
    """One user's stream (``user_id`` None: the public stream) across any number of sessions."""

    name: str
    user_id: str | None
    edges: list[str]  # base URLs; the client uses ``edges[edge]``
    headers: Callable[[], Mapping[str, str]]
    store: PayloadStore
    start: str | None = None  # first connect: this cursor (`offset=`), else `now`
    slow: bool = False
    system_role: str = "user"
    edge: int = 0
    received: list[int] = field(default_factory=list)
    variants: dict[int, bytes] = field(default_factory=dict)
    last_id: str | None = None
    after: int | None = None  # the window starts after this position
    sessions: list[Session] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    refetches: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _writer: asyncio.StreamWriter | None = None
    _stopping: bool = False
    _task: asyncio.Task[None] | None = None
    _progress: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def path(self) -> str:
        return "/public/stream" if self.user_id is None else "/me/stream"

    @property
    def last_position(self) -> int:
        return self.received[-1] if self.received else -1

    def run(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"client-{self.name}")

    def drop(self, edge: int | None = None) -> None:
        """Cut the connection now (as a network failure would); reconnect to ``edge`` if given."""
        if edge is not None:
            self.edge = edge
        writer = self._writer
        if writer is not None:
            writer.transport.abort()

    async def wait_for(self, position: int, timeout: float) -> None:
        """Until an event at or after ``position`` has arrived (or the client gave up)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.last_position < position and not self.refetches and (self.after is None or self.after < position):
            # (a client that never got an event starts afresh at `now`, possibly after `position`)
            if self._task is not None and self._task.done():
                self._task.result()
                raise AssertionError(f"{self.name} stopped early")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"{self.name} has {self.last_position}, waited for {position}; "
                    f"last sessions {self.sessions[-3:]}, closes {dict(self.closes)}, problems {self.problems[:3]}"
                )
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), min(remaining, 1.0))

    async def stop(self) -> None:
        self._stopping = True
        self.drop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def observation(self, until: int) -> Observation:
        payloads = {
            position: self.variants.get(position) or self.store.first[position] for position in set(self.received)
        }
        return Observation(
            name=self.name,
            user_id=self.user_id,
            after=self.after if self.after is not None else until,
            until=until,
            received=self.received,
            payloads=payloads,
            system_role=self.system_role,
        )

    # -- sessions ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            session = Session(self.edges[self.edge])
            self.sessions.append(session)
            try:
                await self._session(session)
            except (OSError, EOFError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                session.ended_by = session.ended_by or type(exc).__name__
                if session.status == 0:
                    # Nobody answered (the edge is down): go to the next one, as a load balancer would.
                    self.edge = (self.edge + 1) % len(self.edges)
            finally:
                self._writer = None
            if self.refetches:
                return  # the oracle reports it: a cursor inside retention must never need a refetch
            if session.status != 200 or session.ended_by not in ("close", "eof", "ConnectionResetError"):
                await asyncio.sleep(RETRY_WAIT)

    async def _connect(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if not self.slow:
            return await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RCVBUF)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), CONNECT_TIMEOUT)
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    async def _session(self, session: Session) -> None:
        host, port = session.edge.removeprefix("http://").split(":")
        reader, writer = await self._connect(host, int(port))
        self._writer = writer
        try:
            writer.write(self._request(host, port, session))
            status, headers = await asyncio.wait_for(_read_head(reader), CONNECT_TIMEOUT)
            session.status = status
            self.statuses[status] += 1
            if status != 200:
                session.ended_by = f"status {status}"
                return
            if not headers.get("content-type", "").startswith("text/event-stream"):
                self.problems.append(f"200 without an event stream: {headers}")
                return
            await self._read_events(reader, session, chunked="chunked" in headers.get("transfer-encoding", ""))
        finally:
            writer.transport.abort()

    def _request(self, host: str, port: str, session: Session) -> bytes:
        target, extra = self.path, []
        if self.last_id is not None:
            extra.append(f"Last-Event-ID: {self.last_id}")
            session.sent_cursor = self.last_id
        elif self.start is not None:
            target += f"?offset={self.start}"
            session.sent_cursor = self.start
        lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream", *extra]
        lines += [f"{name}: {value}" for name, value in self.headers().items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def _read_events(self, reader: asyncio.StreamReader, session: Session, *, chunked: bool) -> None:
        body = _Dechunker() if chunked else None
        pending = b""
        while True:
            data = await reader.read(SLOW_READ_BYTES if self.slow else 65536)
            if not data:
                session.ended_by = session.ended_by or "eof"
                return
            if self.slow:
                await asyncio.sleep(SLOW_READ_PAUSE)
            if body is not None:
                data = body.feed(data)
            pending += data
            if b"\r" in pending:
                pending = pending.replace(b"\r\n", b"\n")
            *blocks, pending = pending.split(b"\n\n")
            for block in blocks:
                self._dispatch(block, session)
            if body is not None and body.finished:
                session.ended_by = session.ended_by or "eof"
                return

    def _dispatch(self, block: bytes, session: Session) -> None:
        event, cursor, data = b"message", None, None
        for line in block.split(b"\n"):
            name, _, value = line.partition(b":")
            value = value.removeprefix(b" ")
            if name == b"event":
                event = value
            elif name == b"id":
                cursor = value.decode()
            elif name == b"data":
                data = value if data is None else data + b"\n" + value
        if data is None:
            return  # `retry:` alone, or a comment
        if event == b"change":
            if cursor is None:
                self.problems.append("a change without id")
                return
            position = position_of(cursor)
            self.received.append(position)
            self.store.keep(position, data, self.variants)
            self.last_id = cursor
            session.changes += 1
            if session.first is None:
                session.first = position
            session.last = position
            self._progress.set()
        elif event == b"offset":
            offset = json.loads(data)
            session.offset = offset
            if cursor != offset.get("cursor"):
                self.problems.append(f"offset id {cursor} but cursor {offset.get('cursor')}")
            if offset.get("resumed") is not (session.sent_cursor is not None):
                self.problems.append(f"offset resumed={offset.get('resumed')} after sending {session.sent_cursor}")
            if self.after is None:
                self.after = position_of(self.start) if self.start is not None else position_of(str(offset["cursor"]))
            self.last_id = cursor
            self._progress.set()
        elif event == b"close":
            reason = json.loads(data).get("reason", "")
            self.closes[reason] += 1
            session.ended_by = "close"
        elif event == b"must-refetch":
            self.refetches.append(json.loads(data).get("reason", ""))
            session.ended_by = "must-refetch"
        elif event != b"ping":
            self.problems.append(f"unknown event {event!r}")


class _Dechunker:
    """HTTP/1.1 chunked transfer decoding, fed whatever the socket returns."""

    def __init__(self) -> None:
        self._buffer = b""
        self._left = 0  # bytes of chunk data still to come
        self._skip = 0  # bytes of the CRLF after a chunk still to drop
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out: list[bytes] = []
        while self._buffer and not self.finished:
            if self._skip:
                dropped = min(self._skip, len(self._buffer))
                self._buffer = self._buffer[dropped:]
                self._skip -= dropped
                continue
            if self._left:
                piece = self._buffer[: self._left]
                out.append(piece)
                self._buffer = self._buffer[len(piece) :]
                self._left -= len(piece)
                if not self._left:
                    self._skip = 2
                continue
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0:
                break
            size = int(self._buffer[:line_end].split(b";")[0], 16)
            self._buffer = self._buffer[line_end + 2 :]
            if size == 0:
                self.finished = True
            self._left = size
        return b"".join(out)


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status_line = await reader.readline()
    if not status_line:
        raise EOFError("closed before answering")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while True:
        line = (await reader.readline()).decode().rstrip("\r\n")
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if status != 200 and "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    return status, headers
