from __future__ import annotations

import random

import pytest

from userstream.client import ReconnectPolicy


def test_delays_grow_exponentially_within_the_jitter_band_up_to_the_cap() -> None:
    policy = ReconnectPolicy(initial_delay=1.0, max_delay=8.0, multiplier=2.0, jitter=0.5)
    rng = random.Random(7)
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (500, 8.0)]:
        for _ in range(50):
            delay = policy.delay(failures, rng)
            assert ceiling * 0.5 <= delay <= ceiling


def test_jitter_spreads_clients_that_failed_together() -> None:
    policy = ReconnectPolicy(initial_delay=1.0, max_delay=30.0)
    rng = random.Random(1)
    delays = {round(policy.delay(3, rng), 3) for _ in range(100)}
    assert len(delays) > 50


def test_server_hints_are_jittered_and_capped() -> None:
    policy = ReconnectPolicy(max_delay=2.0, jitter=0.0)
    assert policy.jittered(1.5) == 1.5
    assert policy.jittered(7.0) == 2.0


@pytest.mark.parametrize(
    "options", [{"jitter": 1.5}, {"initial_delay": -1.0}, {"initial_delay": 5.0, "max_delay": 1.0}, {"multiplier": 0.5}]
)
def test_nonsense_is_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # the message varies by field
        ReconnectPolicy(**options)
