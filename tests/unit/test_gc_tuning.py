"""The worker's and sink's garbage-collector tuning is applied and undone."""

from __future__ import annotations

import gc

from cxstream.settings import Settings
from streams.gc_tuning import tuned_garbage_collector


def test_thresholds_apply_inside_and_restore_after() -> None:
    before = gc.get_threshold()
    kept = [object() for _ in range(10)]  # alive at the start: frozen with the rest
    with tuned_garbage_collector((12_345, 6, 78)):
        assert gc.get_threshold() == (12_345, 6, 78)
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    assert len(kept) == 10


def test_the_default_collects_young_objects_less_often_than_python() -> None:
    young, _, old = Settings().worker.gc_thresholds
    python_young, _, python_old = gc.get_threshold()
    assert young > python_young
    assert old > python_old  # full collections rarer: they rescan every cached state
