"""tune_gc(): the processor process's collector settings (the CPU lever measured in runtime/heap.py)."""

from __future__ import annotations

import gc

from stream_app.runtime.heap import GC_THRESHOLDS, tune_gc


def test_tune_gc_freezes_the_startup_heap_and_collects_young_objects_less_often() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > before[0]
        assert gc.get_freeze_count() > 0
        assert gc.isenabled()  # cycles are still collected, just less often
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
