"""Prequential (test-then-train) evaluation of the served recommendations, per event-time window.

Every impression is scored before the model learns from it, so the running click-through is an
honest online estimate. Per window (an hour by default) and in total: impressions, clicks,
conversions, click-through, conversion rate, hit rate@k (share of shown lists with a click),
coverage (share of the catalogue served) and the share of active customers served personally.
Distinct-customer and distinct-list figures are sets, so replaying an event changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from online_models.reco.catalogue import PRODUCT_IDS

HOUR_MS = 3_600_000


@dataclass
class WindowCounts:
    impressions: int = 0
    clicks: int = 0
    conversions: int = 0
    lists_shown: set[str] = field(default_factory=set)
    lists_hit: set[str] = field(default_factory=set)
    products_served: set[str] = field(default_factory=set)
    active: set[str] = field(default_factory=set)
    served: set[str] = field(default_factory=set)

    def figures(self) -> dict[str, float | int]:
        active = len(self.active)
        return {
            "impressions": self.impressions,
            "clicks": self.clicks,
            "conversions": self.conversions,
            "ctr": self.clicks / self.impressions if self.impressions else 0.0,
            "conversion_rate": self.conversions / self.impressions if self.impressions else 0.0,
            "hit_rate_at_k": len(self.lists_hit) / len(self.lists_shown)
            if self.lists_shown
            else 0.0,
            "coverage": len(self.products_served) / len(PRODUCT_IDS),
            "active_customers": active,
            # numerators and denominators, for partial KPI rows that sum over partitions
            "lists_shown": len(self.lists_shown),
            "lists_hit": len(self.lists_hit),
            "products_served": len(self.products_served),
            "catalogue_size": len(PRODUCT_IDS),
            "served_active": len(self.served & self.active),
            "personalised_share": len(self.served & self.active) / active if active else 0.0,
        }

    def forget(self, customer_id: str) -> None:
        self.active.discard(customer_id)
        self.served.discard(customer_id)


class Prequential:
    """Counts per event-time window plus running totals (totals keep no customer sets)."""

    def __init__(self, window_ms: int = HOUR_MS) -> None:
        self.window_ms = window_ms
        self.windows: dict[int, WindowCounts] = {}
        self.impressions = 0
        self.clicks = 0
        self.conversions = 0
        self.lists_shown = 0
        self.lists_hit = 0

    def _window(self, t: int) -> WindowCounts:
        start = t - t % self.window_ms
        counts = self.windows.get(start)
        if counts is None:
            counts = self.windows[start] = WindowCounts()
        return counts

    def impression(self, t: int, recommendation_id: str) -> None:
        w = self._window(t)
        w.impressions += 1
        self.impressions += 1
        if recommendation_id not in w.lists_shown:
            w.lists_shown.add(recommendation_id)
            self.lists_shown += 1

    def click(self, t: int, recommendation_id: str) -> None:
        w = self._window(t)
        w.clicks += 1
        self.clicks += 1
        if recommendation_id not in w.lists_hit:
            w.lists_hit.add(recommendation_id)
            self.lists_hit += 1

    def conversion(self, t: int) -> None:
        self._window(t).conversions += 1
        self.conversions += 1

    def active(self, t: int, customer_id: str) -> None:
        self._window(t).active.add(customer_id)

    def served(self, t: int, customer_id: str, products: list[str]) -> None:
        w = self._window(t)
        w.served.add(customer_id)
        w.active.add(customer_id)
        w.products_served.update(products)

    def close(self, before_ms: int) -> list[tuple[int, dict[str, float | int]]]:
        """Remove and return the windows that ended before ``before_ms`` (oldest first)."""
        done = sorted(s for s in self.windows if s + self.window_ms <= before_ms)
        return [(s, self.windows.pop(s).figures()) for s in done]

    def forget(self, customer_id: str) -> None:
        for counts in self.windows.values():
            counts.forget(customer_id)

    def snapshot(self) -> dict[str, Any]:
        current = max(self.windows) if self.windows else None
        return {
            "impressions": self.impressions,
            "clicks": self.clicks,
            "conversions": self.conversions,
            "ctr": self.clicks / self.impressions if self.impressions else 0.0,
            "conversion_rate": self.conversions / self.impressions if self.impressions else 0.0,
            "hit_rate_at_k": self.lists_hit / self.lists_shown if self.lists_shown else 0.0,
            "window": None
            if current is None
            else {"start_ms": current, **self.windows[current].figures()},
        }
