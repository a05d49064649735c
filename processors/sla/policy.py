"""SLA policy: how long a feedback item may wait for its first response, and when to alert.

Everything here is pure and in event time (epoch ms). A clock *counts* from its start, except
while paused (awaiting the customer) and, with a business-hours calendar, outside business hours
and on holidays. A level is due when the clock has counted its offset:

- ``warning`` at ``warning_fraction`` (80 %) of the response time,
- ``breach`` at the response time,
- ``escalation_N`` at the response time plus the N-th escalation step (counted the same way).

>>> from cxstream.settings import Settings
>>> policy = SlaPolicy.from_settings(Settings())
>>> item = policy.for_item("fees", "medium", "app")
>>> [(level.name, level.offset_ms // 3_600_000) for level in item.levels]
[('warning', 19), ('breach', 24), ('escalation_1', 48), ('escalation_2', 72)]
>>> due_time(0, [(3_600_000, 7_200_000)], item) // 3_600_000  # paused for one hour
25
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cxstream.errors import ConfigurationError
from cxstream.settings import Settings

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
#: the alert schema's escalation levels
MAX_ESCALATIONS = 3
#: a calendar must open at least once within this many days of any instant (guards loops)
_MAX_CLOSED_DAYS = 370
#: "never" for interval ends (a clock running without end)
FOREVER = 1 << 62

_MATCH_KEYS = ("category", "severity", "channel")
_SET_KEYS = ("hours", "business_hours")

#: a pause: [start, end) in event time; end None = still paused
Pause = tuple[int, int | None]


@dataclass(frozen=True, slots=True)
class Level:
    """One alert level of an item's clock: due when the clock has counted ``offset_ms``."""

    name: str
    offset_ms: int
    #: who it goes to, for the notifier (``on_call``, ``supervisor``, ...)
    audience: str


@dataclass(frozen=True, slots=True)
class Calendar:
    """Business hours: ``days`` (0 = Monday) from ``start`` to ``end`` local time, not holidays."""

    tz: ZoneInfo
    days: frozenset[int]
    start: dt.time
    end: dt.time
    holidays: frozenset[dt.date]

    def open_intervals(self, from_ms: int) -> Iterator[tuple[int, int]]:
        """Business intervals ``[start, end)`` (epoch ms) from ``from_ms`` on, clipped to it."""
        day = dt.datetime.fromtimestamp(from_ms / 1000, self.tz).date()
        closed = 0
        while True:
            if day.weekday() in self.days and day not in self.holidays:
                closed = 0
                start = _epoch_ms(dt.datetime.combine(day, self.start, self.tz))
                end = _epoch_ms(dt.datetime.combine(day, self.end, self.tz))
                if end > from_ms:
                    yield max(start, from_ms), end
            else:
                closed += 1
                if closed > _MAX_CLOSED_DAYS:
                    raise ConfigurationError(
                        f"sla calendar: no business day within {_MAX_CLOSED_DAYS} days after "
                        f"{day} (business_days / holidays)"
                    )
            day += dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class ItemPolicy:
    """The policy of one item: its response time, alert levels and calendar."""

    response_ms: int
    #: warning, breach, escalations, ascending offsets
    levels: tuple[Level, ...]
    calendar: Calendar | None
    #: which rule applied (``default`` or ``override[i]``), for alert details
    rule: str

    @property
    def breach(self) -> Level:
        return self.levels[1]


class SlaPolicy:
    """Settings -> :class:`ItemPolicy` per (category, severity, channel); first override wins."""

    def __init__(
        self,
        *,
        response_hours: float,
        warning_fraction: float,
        escalation_hours: Sequence[float],
        escalation_audiences: Sequence[str],
        overrides: Sequence[Mapping[str, Any]] = (),
        calendar: Calendar | None = None,
        business_hours: bool = False,
    ) -> None:
        if not 0 < warning_fraction < 1:
            raise ConfigurationError(f"sla warning_fraction={warning_fraction}: must be in (0, 1)")
        if len(escalation_hours) > MAX_ESCALATIONS:
            raise ConfigurationError(
                f"sla escalation_hours={list(escalation_hours)}: at most {MAX_ESCALATIONS} steps "
                "(alert levels escalation_1..3)"
            )
        if list(escalation_hours) != sorted(set(escalation_hours)) or any(
            h <= 0 for h in escalation_hours
        ):
            raise ConfigurationError(
                f"sla escalation_hours={list(escalation_hours)}: must be positive and ascending"
            )
        if business_hours and calendar is None:
            raise ConfigurationError("sla business_hours=true needs a calendar")
        self.warning_fraction = warning_fraction
        self.escalation_ms = tuple(round(h * HOUR_MS) for h in escalation_hours)
        audiences = list(escalation_audiences)
        self.audiences = tuple(
            audiences[i] if i < len(audiences) else f"escalation_{i + 1}"
            for i in range(len(self.escalation_ms))
        )
        self.calendar = calendar
        self.default = self._item(_hours_ms(response_hours, "response_hours"), business_hours)
        self.overrides = [
            _parse_override(i, raw, self, business_hours) for i, raw in enumerate(overrides)
        ]
        self.for_item = functools.lru_cache(maxsize=4096)(self._for_item)

    @classmethod
    def from_settings(cls, settings: Settings) -> SlaPolicy:
        sla = settings.sla
        calendar = None
        uses_calendar = sla.business_hours or any(o.get("business_hours") for o in sla.overrides)
        if uses_calendar:
            calendar = build_calendar(
                sla.timezone, sla.business_days, sla.business_start, sla.business_end, sla.holidays
            )
        return cls(
            response_hours=sla.response_hours,
            warning_fraction=sla.warning_fraction,
            escalation_hours=sla.escalation_hours,
            escalation_audiences=sla.escalation_audiences,
            overrides=sla.overrides,
            calendar=calendar,
            business_hours=sla.business_hours,
        )

    def _item(self, response_ms: int, business_hours: bool) -> ItemPolicy:
        levels = [
            Level("warning", round(response_ms * self.warning_fraction), "on_call"),
            Level("breach", response_ms, "on_call"),
        ]
        for i, (step, audience) in enumerate(zip(self.escalation_ms, self.audiences, strict=True)):
            levels.append(Level(f"escalation_{i + 1}", response_ms + step, audience))
        return ItemPolicy(
            response_ms, tuple(levels), self.calendar if business_hours else None, "default"
        )

    def _for_item(self, category: str, severity: str, channel: str) -> ItemPolicy:
        values = {"category": category, "severity": severity, "channel": channel}
        for match, item in self.overrides:
            if all(values[k] == v for k, v in match.items()):
                return item
        return self.default


def _hours_ms(hours: Any, what: str) -> int:
    if isinstance(hours, bool) or not isinstance(hours, int | float) or hours <= 0:
        raise ConfigurationError(f"sla {what}={hours!r}: must be a positive number of hours")
    return round(hours * HOUR_MS)


def _parse_override(
    i: int, raw: Mapping[str, Any], policy: SlaPolicy, default_business: bool
) -> tuple[dict[str, str], ItemPolicy]:
    unknown = set(raw) - set(_MATCH_KEYS) - set(_SET_KEYS)
    if unknown:
        raise ConfigurationError(
            f"sla overrides[{i}]: unknown keys {sorted(unknown)}; match on {_MATCH_KEYS}, "
            f"set {_SET_KEYS}"
        )
    match = {k: str(raw[k]) for k in _MATCH_KEYS if k in raw}
    if not match:
        raise ConfigurationError(f"sla overrides[{i}]={dict(raw)}: matches nothing (no keys)")
    response_ms = (
        _hours_ms(raw["hours"], f"overrides[{i}].hours")
        if "hours" in raw
        else policy.default.response_ms
    )
    business = bool(raw.get("business_hours", default_business))
    item = policy._item(response_ms, business)
    return match, ItemPolicy(item.response_ms, item.levels, item.calendar, f"override[{i}]")


def build_calendar(
    timezone: str,
    days: Sequence[int],
    start: str,
    end: str,
    holidays: Sequence[str],
) -> Calendar:
    """A :class:`Calendar` from settings values; errors name the setting and the value."""
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(f"sla timezone={timezone!r}: unknown time zone") from exc
    if not days or any(d not in range(7) for d in days):
        raise ConfigurationError(f"sla business_days={list(days)}: need days in 0..6 (0 = Monday)")
    try:
        start_t, end_t = dt.time.fromisoformat(start), dt.time.fromisoformat(end)
    except ValueError as exc:
        raise ConfigurationError(
            f"sla business_start/end={start!r}/{end!r}: expected HH:MM"
        ) from exc
    if end_t <= start_t:
        raise ConfigurationError(
            f"sla business hours {start}-{end}: end must be after start (no overnight shifts)"
        )
    try:
        days_off = frozenset(dt.date.fromisoformat(h) for h in holidays)
    except ValueError as exc:
        raise ConfigurationError(f"sla holidays={list(holidays)}: expected ISO dates") from exc
    return Calendar(tz, frozenset(days), start_t, end_t, days_off)


def _epoch_ms(moment: dt.datetime) -> int:
    return round(moment.timestamp() * 1000)


def _merge(paused: Sequence[Pause]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted((s, FOREVER if e is None else e) for s, e in paused):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def counting_intervals(
    start_ms: int, paused: Sequence[Pause], calendar: Calendar | None
) -> Iterator[tuple[int, int]]:
    """Where a clock started at ``start_ms`` counts: business time minus pauses, in order."""
    pauses = _merge(paused)
    base: Iterator[tuple[int, int]] = (
        iter([(start_ms, FOREVER)]) if calendar is None else calendar.open_intervals(start_ms)
    )
    i = 0
    for lo, hi in base:
        while lo < hi:
            while i < len(pauses) and pauses[i][1] <= lo:
                i += 1
            if i == len(pauses) or pauses[i][0] >= hi:
                yield lo, hi
                break
            p_start, p_end = pauses[i]
            if p_start > lo:
                yield lo, p_start
            if p_end >= FOREVER:
                return  # paused without end: the clock never counts again
            lo = p_end


def times_at(
    start_ms: int,
    offsets_ms: Sequence[int],
    paused: Sequence[Pause] = (),
    calendar: Calendar | None = None,
) -> list[int | None]:
    """When the clock has counted each of ``offsets_ms`` (ascending); None if it never does."""
    if not paused and calendar is None:
        return [start_ms + offset for offset in offsets_ms]  # the common case, made cheap
    result: list[int | None] = [None] * len(offsets_ms)
    if not offsets_ms:
        return result
    counted = 0
    k = 0
    for lo, hi in counting_intervals(start_ms, paused, calendar):
        span = hi - lo
        while k < len(offsets_ms) and offsets_ms[k] - counted <= span:
            result[k] = lo + offsets_ms[k] - counted
            k += 1
        if k == len(offsets_ms):
            break
        counted += span
    return result


def due_time(submitted_ms: int, paused: Sequence[Pause], policy: ItemPolicy) -> int | None:
    """The breach deadline of a clock started at ``submitted_ms`` (None while paused for good)."""
    return times_at(submitted_ms, [policy.breach.offset_ms], paused, policy.calendar)[0]


def level_times(
    start_ms: int, paused: Sequence[Pause], policy: ItemPolicy
) -> list[tuple[Level, int | None]]:
    """Every level of ``policy`` with its due time."""
    times = times_at(
        start_ms, [level.offset_ms for level in policy.levels], paused, policy.calendar
    )
    return list(zip(policy.levels, times, strict=True))
