"""Garbage-collector settings for long-running stream processes (worker, sink)."""

from __future__ import annotations

import contextlib
import gc
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
