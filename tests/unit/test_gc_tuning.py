"""The worker's and sink's garbage-collector tuning is applied and undone."""

from __future__ import annotations

import gc
import time
import weakref
from typing import Any

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


def _fake_collector(monkeypatch, **kwargs: Any) -> tuple[BetweenBatchesCollector, list[Any]]:
    calls: list[Any] = []
    monkeypatch.setattr(gc, "get_count", lambda: (100, 0, 0))
    monkeypatch.setattr(gc, "collect", lambda generation=2: calls.append(generation) or 0)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc, "unfreeze", lambda: calls.append("unfreeze"))
    return BetweenBatchesCollector(young=100, **kwargs), calls


def test_between_batches_collects_only_once_enough_survived(monkeypatch) -> None:
    collector, calls = _fake_collector(monkeypatch, middle_every=3, old_every=2, thaw_seconds=1e9)
    monkeypatch.setattr(gc, "get_count", lambda: (10, 0, 0))
    collector.after_batch()
    assert calls == []  # 10 survivors: not worth a collection
    monkeypatch.setattr(gc, "get_count", lambda: (100, 0, 0))
    for _ in range(12):
        collector.after_batch()
    # every 3rd also takes the middle generation, every 2nd of those the old one: then what
    # survived is frozen (old collections only scan what was promoted since)
    assert calls == [0, 0, 1, 0, 0, 2, "freeze", 0, 0, 1, 0, 0, 2, "freeze"]
    assert collector.collections == [12, 4, 2]


def test_between_batches_thaws_and_collects_everything_now_and_then(monkeypatch) -> None:
    collector, calls = _fake_collector(monkeypatch, middle_every=3, old_every=2, thaw_seconds=60)
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    collector._thawed_at = now[0]
    collector.after_batch()
    now[0] += 61
    collector.after_batch()
    collector.after_batch()
    assert calls == [0, "unfreeze", 2, "freeze", 0]
    assert collector.thaws == 1


def test_idle_collects_what_was_promoted_once_then_stays_free(monkeypatch) -> None:
    collector, calls = _fake_collector(monkeypatch, middle_every=3, old_every=2, thaw_seconds=1e9)
    monkeypatch.setattr(gc, "get_count", lambda: (10, 0, 0))
    collector.when_idle()
    assert calls == []  # a few allocations of idle timers: nothing to collect
    counts = [(10, 3, 1)]  # young collections ran since the last full one
    monkeypatch.setattr(gc, "get_count", lambda: counts[0])
    collector.when_idle()
    assert calls == [2, "freeze"]
    counts[0] = (0, 0, 0)  # what a full collection leaves
    collector.when_idle()
    collector.when_idle()
    assert calls == [2, "freeze"]
    assert collector.idle_collections == 1


def test_idle_takes_the_due_thaw(monkeypatch) -> None:
    collector, calls = _fake_collector(monkeypatch, middle_every=3, old_every=2, thaw_seconds=60)
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    collector._thawed_at = now[0] - 61
    collector.when_idle()
    assert calls == ["unfreeze", 2, "freeze"]
    assert collector.thaws == 1
    assert collector.idle_collections == 0


def test_between_batches_really_collects_garbage_cycles() -> None:
    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    gc.collect()
    collector = BetweenBatchesCollector(young=1, middle_every=1000, old_every=1, thaw_seconds=1e9)
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
