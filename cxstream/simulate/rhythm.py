"""Daily and weekly rhythm: how busy each channel is in each local hour of the week."""

from __future__ import annotations

import math
import random

# Relative intensity per local hour (0-23) on a weekday.
_ONLINE = (
    0.25, 0.15, 0.10, 0.08, 0.08, 0.15, 0.35, 0.70, 1.10, 1.40, 1.60, 1.70,
    1.50, 1.40, 1.50, 1.50, 1.40, 1.30, 1.30, 1.50, 1.70, 1.60, 1.10, 0.60,
)  # fmt: skip
_PHONE = (
    0.10, 0.05, 0.03, 0.03, 0.03, 0.05, 0.20, 0.60, 1.30, 1.80, 2.00, 1.90,
    1.40, 1.60, 1.80, 1.70, 1.50, 1.20, 0.90, 0.70, 0.60, 0.50, 0.30, 0.15,
)  # fmt: skip
_ATM = (
    0.20, 0.10, 0.05, 0.05, 0.05, 0.10, 0.40, 0.80, 1.10, 1.20, 1.30, 1.40,
    1.50, 1.30, 1.20, 1.30, 1.40, 1.50, 1.60, 1.50, 1.30, 1.00, 0.70, 0.40,
)  # fmt: skip
_SHOPPING = (
    0.15, 0.08, 0.05, 0.04, 0.04, 0.08, 0.30, 0.90, 1.10, 1.00, 1.00, 1.50,
    2.00, 1.40, 1.00, 1.00, 1.10, 1.40, 1.90, 1.90, 1.60, 1.20, 0.70, 0.35,
)  # fmt: skip
# branches: open 09-17 on weekdays, 10-16 on Saturday, closed on Sunday
_BRANCH_WEEKDAY = {9: 0.8, 10: 1.2, 11: 1.3, 12: 1.4, 13: 1.2, 14: 1.1, 15: 1.0, 16: 0.9}
_BRANCH_SATURDAY = {10: 0.7, 11: 0.8, 12: 0.8, 13: 0.7, 14: 0.7, 15: 0.6}

_DAY_CURVES = {
    "web": _ONLINE,
    "app": _ONLINE,
    "social": _ONLINE,
    "chat": _ONLINE,
    "phone": _PHONE,
    "atm": _ATM,
    "shopping": _SHOPPING,
    "browsing": _ONLINE,
}


def week_curve(kind: str, weekend_factor: float) -> list[float]:
    """168 relative intensities (local Monday 00:00 first), normalised to a weekday mean of 1.

    ``kind`` is a channel name, ``"shopping"`` (card payments) or ``"browsing"`` (anonymous).
    Normalising on weekdays makes configured daily rates and channel shares hold exactly on
    every weekday; weekends are quieter and more online (branches close on Sunday).
    """
    if kind == "branch":
        week = [
            (_BRANCH_WEEKDAY if day < 5 else _BRANCH_SATURDAY if day == 5 else {}).get(hour, 0.0)
            for day in range(7)
            for hour in range(24)
        ]
    else:
        day_curve = _DAY_CURVES[kind]
        week = [
            day_curve[hour] * (weekend_factor if day >= 5 else 1.0)
            for day in range(7)
            for hour in range(24)
        ]
    mean = sum(week[: 5 * 24]) / (5 * 24)
    return [v / mean for v in week]


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (Knuth for small means, normal approximation above 30)."""
    if lam <= 0.0:
        return 0
    if lam < 30.0:
        limit = math.exp(-lam)
        k = 0
        p = rng.random()
        while p > limit:
            k += 1
            p *= rng.random()
        return k
    return max(0, int(rng.gauss(lam, math.sqrt(lam)) + 0.5))
