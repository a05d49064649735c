"""The worker's and sink's garbage-collector tuning is applied and undone."""

from __future__ import annotations

import gc
import weakref

from cxstream.settings import Settings
from streams.gc_tuning import BetweenBatchesCollector, tuned_garbage_collector, worker_thresholds


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


def test_between_batches_collects_only_once_enough_survived(monkeypatch) -> None:
    calls: list[int] = []
    counts = [(10, 0, 0)]
    monkeypatch.setattr(gc, "get_count", lambda: counts[0])
    monkeypatch.setattr(gc, "collect", lambda generation=2: calls.append(generation) or 0)
    collector = BetweenBatchesCollector(young=100, middle_every=3, old_every=2)
    collector.after_batch()
    assert calls == []  # 10 survivors: not worth a collection
    counts[0] = (100, 0, 0)
    for _ in range(12):
        collector.after_batch()
    # every 3rd collection takes the middle generation too, every 2nd of those is a full one
    assert calls == [0, 0, 1, 0, 0, 2, 0, 0, 1, 0, 0, 2]
    assert collector.collections == [12, 4, 2]


def test_between_batches_really_collects_garbage_cycles() -> None:
    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    gc.collect()
    collector = BetweenBatchesCollector(young=1, middle_every=1000, old_every=1000)
    a, b = Node(), Node()
    a.other, b.other = b, a
    probe = weakref.ref(a)
    del a, b
    collector.after_batch()
    assert probe() is None


def test_worker_thresholds_keep_a_high_young_backstop() -> None:
    assert worker_thresholds((50_000, 5, 100), 0, 500_000) == (50_000, 5, 100)
    assert worker_thresholds((50_000, 5, 100), 5_000, 500_000) == (500_000, 5, 100)
    # a backstop below the between-batches threshold would fire first: never
    assert worker_thresholds((50_000, 5, 100), 800_000, 500_000) == (800_000, 5, 100)
