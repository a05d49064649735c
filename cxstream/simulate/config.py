"""What a simulation run looks like: size, time span, behaviour shares and injected scenarios."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cxstream.errors import ConfigurationError

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000

ONLINE_CHANNELS = frozenset({"web", "app", "social", "chat"})

#: share of information/service requests per channel: 75 % online (the plan's KPI wants >= 70 %)
DEFAULT_CHANNEL_SHARES: Mapping[str, float] = MappingProxyType(
    {
        "web": 0.21,
        "app": 0.34,
        "social": 0.07,
        "chat": 0.13,
        "phone": 0.12,
        "branch": 0.09,
        "atm": 0.04,
    }
)

#: mean survey score per dimension (0-100), near the plan's targets; personalisation sits just
#: under its 90 target on purpose so that a KPI below target shows up on the boards
DEFAULT_SURVEY_MEANS: Mapping[str, float] = MappingProxyType(
    {
        "information_access": 86.0,
        "feedback_handling": 82.0,
        "personalisation": 88.0,
        "security": 95.0,
        "overall": 85.0,
    }
)

SCENARIO_TYPES = ("brute_force", "credential_stuffing", "impossible_travel", "staff_bulk_access")

#: injected scenarios per simulated day when the run does not say how many
DEFAULT_SCENARIOS_PER_DAY: Mapping[str, float] = MappingProxyType(
    {
        "brute_force": 2.0,
        "credential_stuffing": 1.0,
        "impossible_travel": 2.0,
        "staff_bulk_access": 1.0,
    }
)

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|[wdhms])")
_UNIT_MS = {"ms": 1, "s": 1000, "m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS, "w": 7 * DAY_MS}


def parse_duration(text: str) -> int:
    """``"1d"``, ``"2h"``, ``"1d12h"``, ``"90m"``, ``"30s"``, ``"500ms"`` -> milliseconds."""
    compact = text.strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(compact):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_MS[match.group(2)]
        pos = match.end()
    if not compact or pos != len(compact) or total <= 0:
        raise ConfigurationError(
            f"duration {text!r}: expected a positive span such as '1d', '2h', '1d12h' or '90m'"
        )
    return int(total)


def format_duration(ms: int) -> str:
    """Milliseconds -> the shortest text :func:`parse_duration` reads back (``"1d12h"``)."""
    parts = []
    for unit in ("d", "h", "m", "s", "ms"):
        size = _UNIT_MS[unit]
        if ms >= size:
            parts.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(parts) or "0ms"


def parse_start(text: str) -> int:
    """An ISO 8601 time (naive means UTC) or epoch milliseconds -> epoch milliseconds."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigurationError(
            f"start {text!r}: expected ISO 8601 (2026-12-01T00:00:00Z) or epoch milliseconds"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True, kw_only=True)
class SimulationConfig:
    """Everything that determines the event sequence: same config -> byte-identical events.

    ``start_ms`` is required (the generator never reads the wall clock); ``duration_ms`` and
    ``max_events`` bound the run, whichever comes first (at least one must be set).
    """

    start_ms: int
    duration_ms: int | None = DAY_MS
    max_events: int | None = None
    seed: int = 0
    customers: int = 1000
    staff: int = 50
    #: IT service accounts calling the customer API all day (a high but legitimate baseline)
    service_accounts: int = 2
    #: local time of the bank: daily rhythm, office hours and branch opening hours
    timezone: str = "Asia/Shanghai"

    channel_shares: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_CHANNEL_SHARES)
    )
    #: chance that a customer's visit uses their favourite channel instead of the general mix
    channel_loyalty: float = 0.5
    #: daily rates are per weekday; weekends follow each channel's curve and weekend_factor
    visits_per_customer_per_day: float = 1.5
    card_payments_per_customer_per_day: float = 1.2
    anonymous_browsing_per_customer_per_day: float = 0.3
    #: relative traffic on Saturday and Sunday (branches and office staff follow their own hours)
    weekend_factor: float = 0.7

    feedback_per_visit: float = 0.02
    #: share of feedback whose first response comes more than 24 h after submission
    unanswered_share: float = 0.08
    #: share of feedback published hours after its submission time (paper forms, batch imports)
    late_feedback_share: float = 0.05
    late_feedback_delay_ms: tuple[int, int] = (1 * HOUR_MS, 10 * HOUR_MS)

    survey_per_visit: float = 0.03
    survey_means: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SURVEY_MEANS))
    consent_change_per_visit: float = 0.002
    recommendation_per_online_visit: float = 0.5
    #: erasure requests per customer per day (0 = none; right-to-erasure traffic is opt-in)
    erasure_per_customer_per_day: float = 0.0
    #: legitimate trips per customer per day (logins from another city, with travel time)
    trips_per_customer_per_day: float = 0.01

    #: scenario type -> how many to inject; ``None`` = DEFAULT_SCENARIOS_PER_DAY x span
    scenarios: Mapping[str, int] | None = None
    #: distinct customers one staff bulk access touches in an hour (capped at the population)
    staff_bulk_records: int = 300

    def __post_init__(self) -> None:
        if self.duration_ms is None and self.max_events is None:
            raise ConfigurationError("simulation: set a duration, a number of events, or both")
        if self.duration_ms is not None and self.duration_ms <= 0:
            raise ConfigurationError(f"simulation duration_ms={self.duration_ms}: must be > 0")
        if self.max_events is not None and self.max_events < 0:
            raise ConfigurationError(f"simulation max_events={self.max_events}: must be >= 0")
        if self.customers < 1:
            raise ConfigurationError(f"simulation customers={self.customers}: must be >= 1")
        if self.staff < 1:
            raise ConfigurationError(f"simulation staff={self.staff}: must be >= 1")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigurationError(f"simulation timezone {self.timezone!r}: unknown") from exc
        unknown = set(self.channel_shares) - set(DEFAULT_CHANNEL_SHARES)
        if unknown or not self.channel_shares or min(self.channel_shares.values()) < 0:
            raise ConfigurationError(
                f"simulation channel_shares {dict(self.channel_shares)}: channels must be among "
                f"{sorted(DEFAULT_CHANNEL_SHARES)} with shares >= 0"
            )
        if sum(self.channel_shares.values()) <= 0:
            raise ConfigurationError("simulation channel_shares: at least one share must be > 0")
        for name in ("unanswered_share", "late_feedback_share", "channel_loyalty"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigurationError(f"simulation {name}={value}: must be within [0, 1]")
        low, high = self.late_feedback_delay_ms
        if not 0 < low <= high < 20 * HOUR_MS:
            # late arrivals must stay inside the 24 h answer window, or "answered in time" breaks
            raise ConfigurationError(
                f"simulation late_feedback_delay_ms={self.late_feedback_delay_ms}: "
                "need 0 < low <= high < 20 h"
            )
        if set(self.survey_means) != set(DEFAULT_SURVEY_MEANS) or not all(
            0 < v <= 100 for v in self.survey_means.values()
        ):
            raise ConfigurationError(
                f"simulation survey_means {dict(self.survey_means)}: need a mean in (0, 100] "
                f"for each of {sorted(DEFAULT_SURVEY_MEANS)}"
            )
        if self.scenarios is not None:
            bad = {k: v for k, v in self.scenarios.items() if k not in SCENARIO_TYPES or v < 0}
            if bad:
                raise ConfigurationError(
                    f"simulation scenarios {bad}: types are {', '.join(SCENARIO_TYPES)}, "
                    "counts >= 0"
                )
        if self.staff_bulk_records < 1:
            raise ConfigurationError(
                f"simulation staff_bulk_records={self.staff_bulk_records}: must be >= 1"
            )

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def expected_events_per_day(self) -> float:
        """Rough event volume per simulated day (used to size runs bounded only by events)."""
        per_customer = (
            self.visits_per_customer_per_day * 5.2
            + self.card_payments_per_customer_per_day
            + self.anonymous_browsing_per_customer_per_day * 2.0
        )
        staff = self.staff * 40 + self.service_accounts * 24 * 120
        return self.customers * per_customer + staff

    def span_ms(self) -> int:
        """Simulated span: the duration, or the span ``max_events`` is expected to need."""
        if self.duration_ms is not None:
            return self.duration_ms
        assert self.max_events is not None
        registration = self.customers * 2.5
        days = max(self.max_events - registration, 0) / self.expected_events_per_day()
        return max(int(days * DAY_MS), HOUR_MS)

    def scenario_counts(self) -> dict[str, int]:
        """How many of each scenario type this run injects."""
        if self.scenarios is not None:
            return {name: int(self.scenarios.get(name, 0)) for name in SCENARIO_TYPES}
        days = self.span_ms() / DAY_MS
        # at least one of each on runs of an hour or more, so short demos show every pattern
        floor = 1 if days * 24 >= 1 else 0
        return {
            name: max(floor, round(rate * days)) for name, rate in DEFAULT_SCENARIOS_PER_DAY.items()
        }

    def describe(self) -> dict[str, Any]:
        """Plain-JSON form (printed in summaries and stored with benchmark results)."""
        return {
            "start": datetime.fromtimestamp(self.start_ms / 1000, UTC).isoformat(),
            "start_ms": self.start_ms,
            "duration_ms": self.duration_ms,
            "max_events": self.max_events,
            "seed": self.seed,
            "customers": self.customers,
            "staff": self.staff,
            "service_accounts": self.service_accounts,
            "timezone": self.timezone,
            "channel_shares": dict(self.channel_shares),
            "unanswered_share": self.unanswered_share,
            "late_feedback_share": self.late_feedback_share,
            "erasure_per_customer_per_day": self.erasure_per_customer_per_day,
            "scenarios": self.scenario_counts(),
        }
