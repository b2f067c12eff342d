"""The collector tuning services apply once started (run in a child: it changes the whole interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

from userstream import gc_tuning

_CHILD = """
import gc, json
from userstream import gc_tuning
kept = [{"built": "at start-up"} for _ in range(1000)]
before = gc.get_freeze_count()
gc_tuning.tune_after_start()
print(json.dumps({"before": before, "frozen": gc.get_freeze_count(), "threshold": gc.get_threshold(),
                  "enabled": gc.isenabled()}))
"""


def _tuned_interpreter() -> dict[str, object]:
    output = subprocess.run([sys.executable, "-c", _CHILD], check=True, capture_output=True, text=True).stdout
    result: dict[str, object] = json.loads(output)
    return result


def test_start_up_objects_are_frozen_and_the_thresholds_raised() -> None:
    tuned = _tuned_interpreter()
    assert tuned["before"] == 0
    assert isinstance(tuned["frozen"], int)
    assert tuned["frozen"] >= 1000  # at least what start-up kept
    assert tuned["threshold"] == [gc_tuning.YOUNG_THRESHOLD, gc_tuning.MIDDLE_THRESHOLD, gc_tuning.OLD_THRESHOLD]
    assert tuned["enabled"] is True  # collection is tuned, never switched off


def test_cyclic_garbage_is_still_collected_after_tuning() -> None:
    child = (
        "import gc, weakref\n"
        "from userstream import gc_tuning\n"
        "gc_tuning.tune_after_start()\n"
        "class Node: pass\n"
        "a, b = Node(), Node(); a.other, b.other = b, a\n"
        "probe = weakref.ref(a); del a, b\n"
        "kept = [[] for _ in range(300_000)]\n"  # allocations that survive drive the automatic collections
        "print(probe() is None)\n"
    )
    output = subprocess.run([sys.executable, "-c", child], check=True, capture_output=True, text=True).stdout
    assert output.strip() == "True"
