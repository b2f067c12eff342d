"""Parsing JetStream's ``Nats-Time-Stamp`` (RFC 3339 with nanoseconds) cheaply, for the lag metric."""

from __future__ import annotations

import calendar
import time


class TimestampParser:
    """Seconds since the epoch; the whole-second part is cached, as consecutive events share it."""

    __slots__ = ("_base", "_prefix")

    def __init__(self) -> None:
        self._prefix = ""
        self._base = 0.0

    def seconds(self, stamp: str) -> float | None:
        prefix, _, rest = stamp.partition(".")
        if prefix != self._prefix:
            try:
                self._base = float(calendar.timegm(time.strptime(prefix.rstrip("Z"), "%Y-%m-%dT%H:%M:%S")))
            except ValueError:
                return None
            self._prefix = prefix
        digits = rest.rstrip("Z")
        fraction = float("0." + digits) if digits.isdigit() else 0.0
        return self._base + fraction
