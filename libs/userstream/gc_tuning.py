"""The garbage collector, tuned for services that hold many long-lived objects.

CPython's defaults (700, 10, 10) suit short scripts. An edge worker holding
10,000 streams keeps millions of tracked objects alive, and with the defaults a
reconnect storm triggered 17 full collections of up to 0.5 s each: 5 of the
~17 CPU seconds the edge spent on 10,000 connects and 10,000 resumes went to
the collector, and every stream on the worker stalled for each pause
(`python -m benchmarks edge --scenarios idle`, see docs/benchmarks.md).

Two changes, both standard for long-running CPython servers:

- ``gc.freeze()`` once started: what start-up built (modules, the app, the
  policy, loaded snapshots) lives as long as the process, so the collector
  stops re-scanning it. Frozen objects are still freed by reference counting.
- Fewer, larger young collections and rare full ones: a young collection every
  10,000 allocations instead of 700; the middle generation after 10 of those
  (pauses stay under ~0.1 s at 10,000 streams); a full collection only after
  100 middle ones (CPython also waits until the old generation has grown by a
  quarter). Cyclic garbage is still collected, a little later.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000
MIDDLE_THRESHOLD = 10
OLD_THRESHOLD = 100


def tune_after_start() -> None:
    """Call once the service has started: freeze what start-up built, then apply the thresholds."""
    gc.collect()  # leave start-up's own garbage out of the permanent generation
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
