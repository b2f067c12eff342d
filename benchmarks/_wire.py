"""Just enough HTTP/1.1 and Server-Sent Events parsing for the load generator: bytes in, frames out.

Written for thousands of connections in one process: no per-line objects on
the hot path, only ``bytes.find`` / ``split`` over whole reads.
"""

from __future__ import annotations

HEAD_END = b"\r\n\r\n"


class ResponseHead:
    __slots__ = ("chunked", "content_length", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status = status
        self.headers = headers
        self.chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        length = headers.get("content-length")
        self.content_length = int(length) if length is not None and length.isdigit() else None


def parse_head(raw: bytes) -> ResponseHead:
    """The status line and headers (without the blank line that ends them)."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP response: {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return ResponseHead(int(parts[1]), headers)


class Dechunker:
    """Undoes ``Transfer-Encoding: chunked`` incrementally; ``ended`` after the last (empty) chunk."""

    __slots__ = ("_left", "_pending", "_skip", "ended")

    def __init__(self) -> None:
        self._left = 0  # bytes of chunk data still to come
        self._skip = 0  # bytes of the CRLF after chunk data still to skip
        self._pending = b""  # an incomplete size line
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        if self._pending:
            data = self._pending + data
            self._pending = b""
        out: list[bytes] = []
        position = 0
        size = len(data)
        while position < size and not self.ended:
            if self._skip:
                taken = min(self._skip, size - position)
                position += taken
                self._skip -= taken
                continue
            if self._left == 0:
                end = data.find(b"\r\n", position)
                if end < 0:
                    self._pending = data[position:]
                    break
                length = int(data[position:end].split(b";", 1)[0], 16)
                position = end + 2
                if length == 0:
                    self.ended = True
                    break
                self._left = length
                continue
            taken = min(self._left, size - position)
            out.append(data[position : position + taken])
            position += taken
            self._left -= taken
            if self._left == 0:
                self._skip = 2
        if len(out) == 1:
            return out[0]
        return b"".join(out)


class FrameSplitter:
    """Cuts an SSE byte stream into frames (the text between blank lines); CRLF is read as LF."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer + data if self._buffer else data
        if b"\r" in buffer:
            # A CR at the very end may be the first half of a CRLF: keep it for the next read.
            keep = buffer.endswith(b"\r")
            buffer = buffer[:-1].replace(b"\r\n", b"\n") + b"\r" if keep else buffer.replace(b"\r\n", b"\n")
        frames = buffer.split(b"\n\n")
        self._buffer = frames.pop()
        return frames


def frame_fields(frame: bytes) -> tuple[bytes, bytes | None, bytes | None]:
    """(event, id, data) of one frame; event defaults to ``message``, data lines are joined with LF."""
    event = b"message"
    event_id: bytes | None = None
    data: bytes | None = None
    for line in frame.split(b"\n"):
        if not line:
            continue
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data = value if data is None else data + b"\n" + value
        elif name == b"event":
            event = value
        elif name == b"id":
            event_id = value
    return event, event_id, data
