"""Garbage-collector settings for long-running stream processes (worker, sink)."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator


@contextlib.contextmanager
def tuned_garbage_collector(thresholds: tuple[int, int, int]) -> Iterator[None]:
    """Freeze what is alive now and collect young objects less often, until the block ends.

    A worker holds a large, long-lived heap (cached profile states, models, windows) and a
    sink batch keeps tens of thousands of decoded records alive for about a second, while
    both allocate a few dozen containers per event. With Python's defaults (700, 10, 10) the
    collector ran every 700 allocations and kept re-scanning what was alive:

    - ``cxstream worker -p profiles`` at 8.5k new-customer events/s: produce -> Redis p50
      1,125 ms with the defaults, 227 ms with (50000, 20, 10);
    - the sink: about 3 us of CPU per event, a fifth of its cost (``bench sink``).

    Frozen objects (modules, Faust's machinery) are never scanned again. Garbage cycles are
    still collected, only later (at most ``thresholds[0]`` net container allocations after),
    so memory stays bounded. Process-wide: for the process that runs the worker or the sink.
    """
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()


def worker_thresholds(
    thresholds: tuple[int, int, int], between_batches: int, backstop: int
) -> tuple[int, int, int]:
    """The automatic thresholds of a worker: ``thresholds``, or with collections between
    batches (:class:`BetweenBatchesCollector`) a young threshold that is only a backstop."""
    if not between_batches:
        return thresholds
    return (max(backstop, between_batches), thresholds[1], thresholds[2])


class BetweenBatchesCollector:
    """Runs the worker's collections between fetched batches.

    Python collects when net container allocations pass a threshold, which in a worker is in
    the middle of a batch: its decoded events, messages and records are all alive then, so
    every collection scanned them and promoted them to older generations, which later
    collections scanned again (10-200 ms each at 10k-25k events/s). Between two batches those
    objects are gone and the young generation holds only what really outlives a batch (new
    cached states, pending publications): a collection there costs a few milliseconds.

    :meth:`after_batch` collects once ``young`` containers survived since the last collection
    (50,000 let them pile up into 30-150 ms collections, 5,000 makes 2-5 ms ones); every
    ``middle_every``-th collection includes the middle generation and every ``old_every``-th
    of those the old one, after which what survived is frozen: the old generation then only
    holds what was promoted since, so those collections stay short, instead of rescanning every
    cached state (200-340 ms each, every few seconds, at 10k events/s with new customers).
    Garbage cycles among frozen objects wait for the thaw every ``thaw_seconds``: everything
    unfrozen, one full collection, frozen again (the one long pause; it bounds what such
    cycles can hold). Python's automatic collection stays on with a high threshold
    (``gc_backstop_threshold``) as a backstop for code that never reaches a batch boundary.

    :meth:`when_idle` (a fetch that found nothing) runs what is pending while nobody waits: the
    thaw when due, else one collection of everything unfrozen, then a freeze. Without it a
    burst's survivors (the big batches of a catch-up) were scanned by the first middle
    collection under live traffic: 283-338 ms, 1.1 s into the 10k/s phase of ``bench
    profiles``, in two of two timed runs.
    """

    def __init__(
        self, young: int, middle_every: int, old_every: int, thaw_seconds: float
    ) -> None:
        self.young = young
        self.middle_every = max(1, middle_every)
        self.old_every = max(1, old_every)
        self.thaw_seconds = thaw_seconds
        self.collections = [0, 0, 0]
        self.thaws = 0
        self.idle_collections = 0
        self._thawed_at = time.monotonic()

    def after_batch(self) -> None:
        if gc.get_count()[0] < self.young:
            return
        if self._thaw_due():
            self._thaw()
            return
        runs = self.collections
        generation = 0
        if (runs[0] + 1) % self.middle_every == 0:
            generation = 2 if (runs[1] + 1) % self.old_every == 0 else 1
        for younger in range(generation + 1):
            runs[younger] += 1
        gc.collect(generation)
        if generation == 2:
            gc.freeze()

    def when_idle(self) -> None:
        if self._thaw_due():
            self._thaw()
            return
        young, middle, old = gc.get_count()
        if young < self.young and not middle and not old:
            return  # nothing promoted since the last full collection: idle loops stay free
        self.idle_collections += 1
        gc.collect(2)
        gc.freeze()

    def _thaw_due(self) -> bool:
        return time.monotonic() - self._thawed_at >= self.thaw_seconds

    def _thaw(self) -> None:
        self._thawed_at = time.monotonic()
        self.thaws += 1
        gc.unfreeze()
        gc.collect(2)
        gc.freeze()
