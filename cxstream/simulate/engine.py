"""The simulated clock and the queue of future events shared by every behaviour."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from datetime import datetime
from functools import partial
from itertools import count
from typing import Any

from cxstream.simulate.config import MINUTE_MS, SimulationConfig
from cxstream.simulate.ids import hex_id, uuid4_from
from cxstream.simulate.labels import LabelSink, ScenarioLabel
from cxstream.simulate.population import Population

_QUARTER_HOUR_MS = 15 * MINUTE_MS

#: end of a run bounded only by its number of events
_NEVER = 1 << 62

# (publish time ms, tie-breaking sequence, event name, record, scenario tracker or None)
Pending = tuple[int, int, str, dict[str, Any], "ScenarioTracker | None"]


class ScenarioTracker:
    """Collects the event ids of one injected scenario as they are generated."""

    __slots__ = ("label", "pending", "sink")

    def __init__(self, label: ScenarioLabel, sink: LabelSink | None) -> None:
        self.label = label
        self.sink = sink
        self.pending = 0

    def emitted(self, record: dict[str, Any]) -> None:
        label = self.label
        t = record["occurred_at"]
        if not label.event_ids:
            label.start_ms = label.end_ms = t
        label.start_ms = min(label.start_ms, t)
        label.end_ms = max(label.end_ms, t)
        label.event_ids.append(record["event_id"])
        self.pending -= 1
        if self.pending == 0 and self.sink is not None:
            self.sink.write(label)

    def flush_partial(self) -> None:
        """The run ended early: write what went out, marked incomplete."""
        if self.pending > 0 and self.label.event_ids and self.sink is not None:
            self.label.complete = False
            self.sink.write(self.label)
        self.pending = 0


class Engine:
    """Pending events ordered by publish time; ids and local time for the behaviours.

    Behaviours push events at or after the current slice start, so popping everything before the
    slice end keeps the published sequence in nondecreasing publish time.
    """

    def __init__(
        self, config: SimulationConfig, population: Population, rng: random.Random
    ) -> None:
        self.config = config
        self.pop = population
        self.rng = rng
        self.start_ms = config.start_ms
        self.end_ms: int | None = (
            config.start_ms + config.duration_ms if config.duration_ms is not None else None
        )
        self._push_limit = self.end_ms if self.end_ms is not None else _NEVER
        self.heap: list[Pending] = []
        self._seq = count()
        self._zone = config.zone
        self._hour_of_week: dict[int, int] = {}
        self.trackers: list[ScenarioTracker] = []
        #: a fresh event id (a partial, not a method: called for every event)
        self.uuid: Callable[[], str] = partial(uuid4_from, rng)

    def hex_id(self, prefix: str, bits: int = 64) -> str:
        return hex_id(self.rng, prefix, bits)

    def push(
        self,
        t: int,
        name: str,
        record: dict[str, Any],
        tracker: ScenarioTracker | None = None,
    ) -> bool:
        """Schedule ``record`` for publishing at ``t``; False (dropped) past the end of the run."""
        if t >= self._push_limit:
            return False
        heapq.heappush(self.heap, (t, next(self._seq), name, record, tracker))
        if tracker is not None:
            tracker.pending += 1
        return True

    def hour_of_week(self, t: int) -> int:
        """Local hour of the week (Monday 00:00 = 0) of epoch-ms ``t``.

        Cached per quarter hour, which is exact for every zone offset in use.
        """
        key = t // _QUARTER_HOUR_MS
        how = self._hour_of_week.get(key)
        if how is None:
            local = datetime.fromtimestamp(t / 1000, self._zone)
            how = local.weekday() * 24 + local.hour
            self._hour_of_week[key] = how
        return how

    def local_day(self, t: int) -> tuple[int, int, int]:
        """Local (year, month, day) of ``t``."""
        local = datetime.fromtimestamp(t / 1000, self._zone)
        return local.year, local.month, local.day

    def local_midnight_ms(self, t: int) -> int:
        local = datetime.fromtimestamp(t / 1000, self._zone)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        return int(midnight.timestamp() * 1000)
