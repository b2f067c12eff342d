"""Every ``userstream dev`` a test starts is stopped, with whatever it left behind."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

import pytest

from tests.integration.dev.running import DevRun


@pytest.fixture
def dev_runs() -> Iterator[list[DevRun]]:
    """Every run a test starts is killed, with whatever it left, if the test did not stop it."""
    runs: list[DevRun] = []
    yield runs
    for run in runs:
        if run.process.poll() is not None:
            run.close_output()
            continue
        if run.process.poll() is None:
            children = run.children()
            run.process.kill()
            run.process.wait()
            for pid in children:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
            run.close_output()
