"""When to reconnect: exponential backoff with jitter, or the server's own hint."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class ReconnectPolicy:
    """Waits between connection attempts.

    After the n-th failure in a row the client waits a random time between
    ``(1 - jitter)`` and 1 times ``min(max_delay, initial_delay * multiplier**n)``,
    so that many clients cut off at once do not come back at once. A server
    that says when to come back (``retry:`` with ``close``, ``Retry-After``)
    is followed instead, with the same jitter; ``max_delay`` caps every wait.
    """

    initial_delay: float = 0.5
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    # Seconds without a byte (the server pings every 15 s by default) before the connection is deemed dead.
    idle_timeout: float = 45.0
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not (0 <= self.jitter <= 1):
            raise ValueError("jitter must be within 0..1")
        if self.initial_delay < 0 or self.max_delay < self.initial_delay or self.multiplier < 1:
            raise ValueError("need 0 <= initial_delay <= max_delay and multiplier >= 1")

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``failures`` (≥ 1) failed attempts in a row."""
        exponent = max(0, failures - 1)
        base = self.max_delay if exponent > 64 else min(self.max_delay, self.initial_delay * self.multiplier**exponent)
        return self.jittered(base, rng)

    def jittered(self, seconds: float, rng: random.Random | None = None) -> float:
        spread = (rng or random).uniform(1 - self.jitter, 1.0)
        return max(0.0, min(seconds, self.max_delay) * spread)
