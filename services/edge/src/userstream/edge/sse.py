"""Server-Sent Events frames, encoded as bytes once and written as they are.

``change`` frames are built once per event per worker (``events.py``); the
rest are small and built here.
"""

from __future__ import annotations

import msgspec

PING = b"event: ping\ndata: {}\n\n"


def retry_frame(milliseconds: int) -> bytes:
    """Tells the browser how long to wait before reconnecting; carries no event."""
    return b"retry: %d\n\n" % milliseconds


def change_frame(cursor: bytes, payload: bytes) -> bytes:
    return b"event: change\nid: " + cursor + b"\ndata: " + payload + b"\n\n"


def offset_frame(cursor: str, *, resumed: bool) -> bytes:
    data = msgspec.json.encode({"cursor": cursor, "resumed": resumed})
    return b"event: offset\nid: " + cursor.encode() + b"\ndata: " + data + b"\n\n"


def close_frame(reason: str, cursor: str | None = None) -> bytes:
    """``cursor``, when given, becomes the client's last event id (a resync rewinds it)."""
    identifier = b"" if cursor is None else b"id: " + cursor.encode() + b"\n"
    return b"event: close\n" + identifier + b"data: " + msgspec.json.encode({"reason": reason}) + b"\n\n"


def must_refetch_frame(reason: str) -> bytes:
    return b"event: must-refetch\ndata: " + msgspec.json.encode({"reason": reason}) + b"\n\n"
