"""Pure arithmetic of ``cxstream bench pipeline``: percentiles, ratios, rates from lag samples."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50/p99/max in ms of delays given in seconds (nearest rank; ``None`` without values)."""
    if not seconds:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "n": 0}
    ranked = sorted(seconds)

    def rank(q: float) -> float:
        return round(ranked[max(0, math.ceil(q * len(ranked)) - 1)] * 1000, 1)

    return {"p50_ms": rank(0.5), "p99_ms": rank(0.99), "max_ms": round(ranked[-1] * 1000, 1),
            "n": len(ranked)}  # fmt: skip


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` to 3 places, ``None`` when either is missing or zero."""
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


@dataclass
class LagRate:
    """Events/s of a consumer group from samples of its committed lag.

    Offsets are committed every commit interval, so the first sample where the lag fell below
    the total and the first where it reached 0 are both commit points: the events committed
    between them over the time between them is the group's rate from (about) its first to its
    last event, without the group join and without the commit interval's tail.
    """

    total: int
    first: tuple[float, int] | None = None
    done_at: float | None = None
    samples: list[tuple[float, int]] = field(default_factory=list)

    def add(self, at: float, lag: int | None) -> bool:
        """Record the lag at ``at`` (``None``: nothing committed yet); True once it is 0."""
        if lag is None:
            return False
        self.samples.append((at, lag))
        if self.first is None and lag < self.total:
            self.first = (at, lag)
        if lag <= 0 and self.done_at is None:
            self.done_at = at
        return self.done_at is not None

    @property
    def events_per_s(self) -> float | None:
        if self.first is None or self.done_at is None or self.done_at <= self.first[0]:
            return None
        return self.first[1] / (self.done_at - self.first[0])
