"""The latency histogram: percentiles within 1 %, exact merges."""

from __future__ import annotations

from benchmarks._histogram import Histogram


def test_percentiles_are_within_one_percent() -> None:
    histogram = Histogram()
    for value in range(1, 10_001):
        histogram.add(value / 100)  # 0.01 .. 100 ms
    for q, exact in ((0.5, 50.0), (0.99, 99.0)):
        found = histogram.percentile(q)
        assert found is not None
        assert abs(found - exact) / exact < 0.011


def test_merge_equals_adding_everything_to_one() -> None:
    a, b, both = Histogram(), Histogram(), Histogram()
    for value in (0.5, 3.0, 250.0):
        a.add(value)
        both.add(value)
    for value in (0.0, 7.0):
        b.add(value)
        both.add(value)
    merged = Histogram.merged([Histogram.from_json(a.to_json()), Histogram.from_json(b.to_json())])
    assert merged.counts == both.counts
    assert merged.count == 5
    assert merged.max_ms == 250.0
    assert merged.cdf()[-1] == (250.0, 1.0)


def test_an_empty_histogram_has_no_percentiles() -> None:
    assert Histogram().percentile(0.99) is None
    assert Histogram().summary()["p50_ms"] is None
