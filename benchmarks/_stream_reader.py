"""One SSE stream read over a raw socket, for the edge resume and drain benchmarks.

Built on ``_wire`` (de-chunking, frame splitting); it keeps only what those
benchmarks check: the ids of `change` events in order, the last ``retry:``
hint, and the data of the frame that ended a wait (`offset`, `close`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from benchmarks._wire import HEAD_END, Dechunker, FrameSplitter, frame_fields, parse_head

_READ_BYTES = 262_144


class StreamReader:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rest: bytes) -> None:
        self._reader = reader
        self._writer = writer
        self._dechunker = Dechunker()
        self._splitter = FrameSplitter()
        self._frames: deque[bytes] = deque()
        self.ids: list[int] = []
        self.retry: int | None = None
        self._feed(rest)

    @classmethod
    async def open(cls, address: str, path: str, headers: dict[str, str]) -> StreamReader:
        """GET ``path`` at ``host:port``; raises unless the answer is a 200 stream."""
        host, port = address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port), limit=2**20)
        lines = [f"GET {path} HTTP/1.1", f"Host: {address}", *(f"{name}: {value}" for name, value in headers.items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        raw = b""
        while HEAD_END not in raw:
            data = await reader.read(65536)
            if not data:
                raise EOFError("the edge closed the connection before answering")
            raw += data
        head, _, rest = raw.partition(HEAD_END)
        response = parse_head(head)
        if response.status != 200:
            writer.close()
            raise RuntimeError(f"stream refused: {response.status} {rest[:200]!r}")
        return cls(reader, writer, rest)

    async def until(self, event: bytes, timeout: float = 120.0) -> bytes:
        """Read frames until one of type ``event``; returns its data. Change ids seen meanwhile go to ``ids``."""
        deadline = time.monotonic() + timeout
        while True:
            frames = self._frames
            while frames:
                frame = frames.popleft()
                name, event_id, data = frame_fields(frame)
                if name == b"change" and event_id is not None:
                    self.ids.append(int(event_id))
                elif name == event:
                    return data or b""
                elif frame.startswith(b"retry: "):
                    self.retry = int(frame[7:].split(b"\n", 1)[0])
            chunk = await asyncio.wait_for(self._reader.read(_READ_BYTES), max(0.001, deadline - time.monotonic()))
            if not chunk:
                raise EOFError(f"the stream ended before `{event.decode()}`")
            self._feed(chunk)

    def _feed(self, data: bytes) -> None:
        if data:
            self._frames.extend(self._splitter.feed(self._dechunker.feed(data)))

    def close(self) -> None:
        self._writer.close()
