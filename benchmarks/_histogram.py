"""A latency histogram with 1 % relative resolution: cheap to fill, exact to merge, enough for p99 and a CDF.

Bins are logarithmic from 1 µs up: bin ``i`` holds values in
``[FLOOR * GROWTH**i, FLOOR * GROWTH**(i+1))`` milliseconds. Merging the
histograms of several load-generator processes is adding their counts, so
percentiles over all clients are exact to the bin width.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

FLOOR_MS = 0.001
GROWTH = 1.01
_LOG_GROWTH = math.log(GROWTH)
# 1 µs .. ~100 s
BINS = int(math.log(100_000 / FLOOR_MS) / _LOG_GROWTH) + 1


class Histogram:
    __slots__ = ("count", "counts", "max_ms", "total_ms")

    def __init__(self) -> None:
        self.counts = [0] * BINS
        self.count = 0
        self.total_ms = 0.0
        self.max_ms = 0.0

    def add(self, value_ms: float) -> None:
        index = 0 if value_ms <= FLOOR_MS else min(BINS - 1, int(math.log(value_ms / FLOOR_MS) / _LOG_GROWTH))
        self.counts[index] += 1
        self.count += 1
        self.total_ms += value_ms
        if value_ms > self.max_ms:
            self.max_ms = value_ms

    def merge(self, other: Histogram) -> None:
        for index, count in enumerate(other.counts):
            if count:
                self.counts[index] += count
        self.count += other.count
        self.total_ms += other.total_ms
        self.max_ms = max(self.max_ms, other.max_ms)

    def percentile(self, q: float) -> float | None:
        """The value below which a fraction ``q`` of the samples fall (upper edge of its bin), None if empty."""
        if not self.count:
            return None
        rank = q * self.count
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank and count:
                return min(upper_edge(index), self.max_ms)
        return self.max_ms

    def cdf(self) -> list[tuple[float, float]]:
        """(latency ms, fraction at or below) at each non-empty bin's upper edge."""
        points: list[tuple[float, float]] = []
        seen = 0
        for index, count in enumerate(self.counts):
            if count:
                seen += count
                points.append((min(upper_edge(index), self.max_ms), seen / self.count))
        return points

    def to_json(self) -> dict[str, object]:
        """Sparse form: only non-empty bins."""
        return {
            "bins": {str(i): c for i, c in enumerate(self.counts) if c},
            "count": self.count,
            "total_ms": self.total_ms,
            "max_ms": self.max_ms,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Histogram:
        histogram = cls()
        bins = data["bins"]
        assert isinstance(bins, dict)
        for index, count in bins.items():
            histogram.counts[int(index)] = int(count)
        histogram.count = int(data["count"])  # type: ignore[call-overload]
        histogram.total_ms = float(data["total_ms"])  # type: ignore[arg-type]
        histogram.max_ms = float(data["max_ms"])  # type: ignore[arg-type]
        return histogram

    @classmethod
    def merged(cls, parts: Iterable[Histogram]) -> Histogram:
        total = cls()
        for part in parts:
            total.merge(part)
        return total

    def summary(self) -> dict[str, float | int | None]:
        return {
            "count": self.count,
            "p50_ms": self.percentile(0.50),
            "p90_ms": self.percentile(0.90),
            "p99_ms": self.percentile(0.99),
            "p999_ms": self.percentile(0.999),
            "max_ms": self.max_ms if self.count else None,
            "mean_ms": self.total_ms / self.count if self.count else None,
        }


def upper_edge(index: int) -> float:
    return FLOOR_MS * GROWTH ** (index + 1)
