"""`python -m benchmarks grpc-floor` measures real servers: a short run of each kind of flavour."""

from __future__ import annotations

import multiprocessing

import pytest

from benchmarks.grpc_floor import measure


@pytest.mark.parametrize("flavour", ["aio-uvloop", "sync-4"])
def test_each_server_flavour_answers_calls_and_its_cpu_is_measured(flavour: str) -> None:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result = measure(flavour, clients=1, duration=0.5, pool=pool)
    assert result["calls_per_s"] > 100  # thousands on any machine; zero would mean no call got through
    assert 0 < result["server_cpu_us_per_call"] < 100_000
