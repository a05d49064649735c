"""SLA policy: overrides, pauses, business hours with holidays, validation."""

from __future__ import annotations

import datetime as dt

import pytest

from cxstream.errors import ConfigurationError
from cxstream.settings import Settings, SlaSettings
from processors.sla.policy import (
    HOUR_MS,
    SlaPolicy,
    build_calendar,
    due_time,
    level_times,
    times_at,
)

MINUTE_MS = 60_000
BERLIN = "Europe/Berlin"


def policy_of(**sla: object) -> SlaPolicy:
    return SlaPolicy.from_settings(Settings(sla=SlaSettings(**sla)))  # type: ignore[arg-type]


def at(text: str, tz: str = "UTC") -> int:
    """Epoch ms of a local ISO time in ``tz``."""
    from zoneinfo import ZoneInfo

    moment = dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz))
    return round(moment.timestamp() * 1000)


def test_default_levels_are_warning_at_80_percent_breach_and_escalations() -> None:
    item = policy_of().for_item("fees", "medium", "app")
    times = {level.name: t for level, t in level_times(1_000, [], item)}
    assert times == {
        "warning": 1_000 + round(0.8 * 24 * HOUR_MS),
        "breach": 1_000 + 24 * HOUR_MS,
        "escalation_1": 1_000 + 48 * HOUR_MS,
        "escalation_2": 1_000 + 72 * HOUR_MS,
    }
    audiences = [level.audience for level in item.levels]
    assert audiences == ["on_call", "on_call", "supervisor", "head_of_department"]


def test_overrides_by_category_severity_channel_first_match_wins() -> None:
    policy = policy_of(
        overrides=(
            {"severity": "critical", "hours": 4},
            {"category": "fees", "channel": "branch", "hours": 48},
            {"category": "fees", "hours": 12},
        ),
        warning_fraction=0.5,
    )
    assert policy.for_item("fees", "critical", "branch").response_ms == 4 * HOUR_MS
    assert policy.for_item("fees", "medium", "branch").response_ms == 48 * HOUR_MS
    assert policy.for_item("fees", "medium", "app").response_ms == 12 * HOUR_MS
    other = policy.for_item("card", "low", "app")
    assert other.response_ms == 24 * HOUR_MS
    assert other.rule == "default"
    warning = policy.for_item("fees", "critical", "app").levels[0]
    assert (warning.name, warning.offset_ms) == ("warning", 2 * HOUR_MS)


def test_pauses_extend_the_deadline_by_the_paused_time_before_it() -> None:
    item = policy_of().for_item("fees", "medium", "app")
    start = 10 * HOUR_MS
    pauses = [(start + HOUR_MS, start + 3 * HOUR_MS), (start + 2 * HOUR_MS, start + 4 * HOUR_MS)]
    # overlapping pauses merge into one of 3 h; a pause after the deadline changes nothing
    pauses.append((start + 40 * HOUR_MS, start + 50 * HOUR_MS))
    assert due_time(start, pauses, item) == start + 27 * HOUR_MS


def test_an_open_pause_stops_the_clock_for_good() -> None:
    item = policy_of().for_item("fees", "medium", "app")
    assert due_time(0, [(HOUR_MS, None)], item) is None
    # but what was counted before the pause still yields earlier levels
    assert times_at(0, [30 * MINUTE_MS, 2 * HOUR_MS], [(HOUR_MS, None)]) == [30 * MINUTE_MS, None]


def test_business_hours_skip_nights_weekends_and_holidays() -> None:
    policy = policy_of(
        business_hours=True,
        timezone=BERLIN,
        business_start="09:00",
        business_end="17:00",
        holidays=("2026-12-24", "2026-12-25"),
        response_hours=8,
    )
    item = policy.for_item("fees", "medium", "app")
    # Wednesday 2026-12-23 15:00: 2 h that day; 24th, 25th holidays; 26th/27th weekend
    submitted = at("2026-12-23T15:00", BERLIN)
    assert due_time(submitted, [], item) == at("2026-12-28T15:00", BERLIN)
    # submitted at night: the clock starts at opening time
    night = at("2026-12-29T22:30", BERLIN)
    assert due_time(night, [], item) == at("2026-12-30T17:00", BERLIN)


def test_business_hours_follow_daylight_saving_time() -> None:
    calendar = build_calendar(BERLIN, (0, 1, 2, 3, 4, 5, 6), "09:00", "17:00", ())
    # Sunday 2026-03-29 is the switch to summer time: opening is 07:00 UTC instead of 08:00
    start = at("2026-03-28T16:00", BERLIN)
    (due,) = times_at(start, [2 * HOUR_MS], (), calendar)
    assert due == at("2026-03-29T10:00", BERLIN) == at("2026-03-29T08:00")


def test_business_hours_with_pause_inside_business_time() -> None:
    calendar = build_calendar("UTC", (0, 1, 2, 3, 4), "09:00", "17:00", ())
    monday = at("2026-12-07T09:00")
    pause = (at("2026-12-07T10:00"), at("2026-12-08T11:00"))  # 1 h counted, then paused
    (due,) = times_at(monday, [4 * HOUR_MS], [pause], calendar)
    assert due == at("2026-12-08T14:00")


def test_override_can_switch_business_hours_off_for_critical_items() -> None:
    policy = policy_of(
        business_hours=True, overrides=({"severity": "critical", "business_hours": False},)
    )
    saturday = at("2026-12-05T12:00")
    assert (
        due_time(saturday, [], policy.for_item("x", "critical", "app")) == saturday + 24 * HOUR_MS
    )
    assert due_time(saturday, [], policy.for_item("x", "low", "app")) == at("2026-12-09T17:00")


@pytest.mark.parametrize(
    ("sla", "message"),
    [
        ({"escalation_hours": (24.0, 12.0)}, "ascending"),
        ({"escalation_hours": (1.0, 2.0, 3.0, 4.0)}, "at most 3"),
        ({"overrides": ({"colour": "red", "hours": 1},)}, "unknown keys"),
        ({"overrides": ({"hours": 1},)}, "matches nothing"),
        ({"overrides": ({"severity": "low", "hours": -1},)}, r"overrides\[0\]\.hours"),
        ({"business_hours": True, "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"business_hours": True, "business_days": ()}, "business_days"),
        ({"business_hours": True, "business_start": "18:00"}, "end must be after start"),
        ({"business_hours": True, "holidays": ("next tuesday",)}, "ISO dates"),
    ],
)
def test_bad_policy_settings_name_the_setting(sla: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        policy_of(**sla)


def test_a_calendar_that_never_opens_is_an_error_not_a_hang() -> None:
    days = tuple(
        (dt.date(2026, 1, 5) + dt.timedelta(days=7 * w)).isoformat() for w in range(60)
    )  # every Monday for 60 weeks
    calendar = build_calendar("UTC", (0,), "09:00", "17:00", days)
    with pytest.raises(ConfigurationError, match="no business day"):
        times_at(at("2026-01-04T00:00"), [HOUR_MS], (), calendar)
