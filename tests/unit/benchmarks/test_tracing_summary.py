"""The tracing benchmark's summary: medians, and ratios paired by round (issue 18)."""

from __future__ import annotations

import pytest

from benchmarks.tracing import summarize, table


def _runs(rounds: list[dict[str, float]]) -> list[dict[str, object]]:
    return [
        {"round": index, "variant": variant, "deliveries_per_cpu_second": value}
        for index, values in enumerate(rounds)
        for variant, value in values.items()
    ]


def test_paired_ratios_cancel_a_round_that_was_slow_for_everyone() -> None:
    runs = _runs(
        [
            {"today": 100.0, "off": 100.0, "1%": 96.0, "100%": 50.0},
            {"today": 50.0, "off": 50.0, "1%": 48.0, "100%": 25.0},  # a busy machine: all halved
            {"today": 100.0, "off": 99.0, "1%": 97.0, "100%": 51.0},
        ]
    )
    summary = summarize(runs)
    assert summary["off"]["paired_vs_today"] == pytest.approx(1.0)
    assert summary["1%"]["paired_vs_today"] == pytest.approx(0.96)
    assert summary["100%"]["paired_range"] == pytest.approx([0.5, 0.51])
    assert summary["today"]["median_deliveries_per_cpu_second"] == 100.0
    assert "| 1% | 96 | 0.960 | 0.960 (0.96–0.97) |" in table(summary)
