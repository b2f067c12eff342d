"""Cursors: a position in one particular log, as the opaque string clients see.

A cursor packs the log's identity (the ``ACTIVITY`` stream's creation time, in
Unix seconds) and the JetStream sequence into one decimal number::

    cursor = log_id * 10**12 + sequence        e.g. "1796012345000000000057"

so cursors from one log sort like their sequences, and a cursor from another
log (the stream was deleted and recreated) is recognised instead of silently
pointing at unrelated events. Sequence 0 means "before the first event".

A bare sequence (a number below 10**12) is accepted as a position in the
current log; userstream never issues one, but it keeps ``offset=0`` meaningful.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

SEQUENCE_SPAN = 10**12
_MAX_DIGITS = 25


class CursorError(ValueError):
    """The text is not a cursor this system issues (malformed)."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in a log: events with a greater sequence come after it."""

    log_id: int
    sequence: int

    def __str__(self) -> str:
        return str(self.log_id * SEQUENCE_SPAN + self.sequence)


def parse_cursor(text: str) -> Cursor:
    """Parse a cursor string; ``log_id`` is 0 for a bare sequence. Raises CursorError."""
    if not text or len(text) > _MAX_DIGITS or not text.isascii() or not text.isdigit():
        raise CursorError("a cursor is a decimal number as sent in the stream's `id:` field")
    if len(text) > 1 and text[0] == "0":
        raise CursorError("a cursor has no leading zeros")
    log_id, sequence = divmod(int(text), SEQUENCE_SPAN)
    return Cursor(log_id, sequence)


class Position(Enum):
    """Where a parsed cursor stands relative to a log's retained range."""

    VALID = "valid"
    EXPIRED = "cursor-expired"
    UNKNOWN = "cursor-unknown"


@dataclass(frozen=True, slots=True)
class LogBounds:
    """The retained range of a log: ``first_sequence``..``last_sequence`` (empty when first > last)."""

    log_id: int
    first_sequence: int
    last_sequence: int

    def locate(self, cursor: Cursor) -> Position:
        """Whether every event after ``cursor`` is still retained in this log."""
        if cursor.log_id not in (0, self.log_id) or cursor.sequence > self.last_sequence:
            return Position.UNKNOWN
        if cursor.sequence + 1 < self.first_sequence:
            return Position.EXPIRED
        return Position.VALID

    @property
    def head(self) -> Cursor:
        return Cursor(self.log_id, self.last_sequence)


class CursorCodec:
    """Fast encoding of sequences of one log, for the hot path."""

    __slots__ = ("_base", "log_id")

    def __init__(self, log_id: int) -> None:
        self.log_id = log_id
        self._base = log_id * SEQUENCE_SPAN

    def encode(self, sequence: int) -> str:
        return str(self._base + sequence)

    def cursor(self, sequence: int) -> Cursor:
        return Cursor(self.log_id, sequence)
