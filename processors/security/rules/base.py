"""What a rule returns, and the small window helpers the rules share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from cxstream.settings import SecuritySettings
from processors.security.access import Access

State = dict[str, Any]
_QUARTER_HOUR_MS = 15 * 60_000


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule's verdict on the event that completed its pattern."""

    rule: str
    severity: str  # low | medium | high | critical
    #: why, naming the thresholds and figures; never clear PII
    explanation: str
    #: the access events that make up the pattern (the completing one last)
    evidence: list[str]
    #: the event that opened the pattern: with (principal, rule) it fixes the flag id
    anchor: str
    #: customer affected (the principal for customers; the target for staff access)
    customer_id: str | None = None
    figures: dict[str, float] = field(default_factory=dict)


class Env:
    """What rules read besides their principal's state: the settings, local time, team stats.

    ``teams`` maps a staff team to its baseline on this partition (a JSON-able dict, stored by
    the engine next to the principals' states); ``touched_teams`` names the ones changed.
    """

    def __init__(self, config: SecuritySettings, teams: dict[str, State] | None = None) -> None:
        self.config = config
        self.zone = ZoneInfo(config.timezone)
        self.teams: dict[str, State] = {} if teams is None else teams
        self.touched_teams: set[str] = set()
        self._local: dict[int, tuple[int, int]] = {}

    def local_time(self, ts_ms: int) -> tuple[int, int]:
        """(weekday Mon = 0, hour) in the configured zone; cached per quarter hour (exact for
        every zone offset in use)."""
        key = ts_ms // _QUARTER_HOUR_MS
        cached = self._local.get(key)
        if cached is None:
            local = datetime.fromtimestamp(ts_ms / 1000, self.zone)
            cached = self._local[key] = (local.weekday(), local.hour)
            if len(self._local) > 4096:
                self._local.clear()
        return cached

    def team(self, name: str) -> State:
        self.touched_teams.add(name)
        return self.teams.setdefault(name, {"base": 0.0, "hours": 0})


Rule = Callable[[State, Access, Env], Finding | None]


def prune(window: list[list[Any]], since_ms: int) -> None:
    """Drop entries (``[ts, ...]``, in arrival order) older than ``since_ms`` from the front."""
    drop = 0
    for entry in window:
        if entry[0] >= since_ms:
            break
        drop += 1
    if drop:
        del window[:drop]


def remember(items: list[Any], value: Any, limit: int) -> bool:
    """Add ``value`` to the bounded most-recent list ``items``; True when it was new."""
    if value in items:
        items.remove(value)
        items.append(value)
        return False
    items.append(value)
    if len(items) > limit:
        del items[0]
    return True
