"""Breach evaluation on global KPI values: duration, sample size, one alert per streak."""

from __future__ import annotations

from typing import Any

from cxstream.settings import Settings
from processors.kpis.breach import BreachRule, alert_id, new_state, observe
from processors.kpis.definitions import BY_KPI
from streams.codec import build_codec

T0 = 1_767_225_600_000
MINUTE = 60_000
KPI = BY_KPI["security_satisfaction"]  # target 95 %
RULE = BreachRule(window="minute", breach_ms=3 * MINUTE, min_samples=10, partitions=2)


def partial(minute: int, partition: int, numerator: int, denominator: int, revision: int = 0):
    return {
        "kpi": KPI.key,
        "window": "minute",
        "window_start": T0 + minute * MINUTE,
        "numerator": numerator,
        "denominator": denominator,
        "source_partition": partition,
        "revision": revision,
    }


def feed(state: dict[str, Any], minute: int, shares: tuple[int, int], rule: BreachRule = RULE):
    """One complete minute: both partitions, (satisfied, answers) split over them."""
    satisfied, answers = shares
    alerts = observe(state, KPI, partial(minute, 0, satisfied // 2, answers // 2), rule, now_ms=1)
    alerts += observe(
        state, KPI, partial(minute, 1, satisfied - satisfied // 2, answers - answers // 2), rule,
        now_ms=1,
    )  # fmt: skip
    return alerts


def test_no_alert_before_the_breach_has_lasted_the_configured_time() -> None:
    state = new_state()
    assert feed(state, 0, (20, 20)) == []  # meets
    assert feed(state, 1, (10, 20)) == []  # misses: streak starts at the end of minute 1
    assert feed(state, 2, (10, 20)) == []
    assert feed(state, 3, (10, 20)) == []  # 2 min so far
    alerts = feed(state, 4, (10, 20))  # 3 min: now
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["alert_id"] == alert_id(KPI.key, "minute", T0 + 2 * MINUTE)
    assert alert["kind"] == "kpi"
    assert alert["level"] == "breach"
    assert alert["department"] == "risk_control"
    assert alert["subject_id"] == KPI.key
    assert alert["details"]["numerator"] == "10"
    assert alert["details"]["denominator"] == "20"
    # still below target: the same streak never alerts again
    assert feed(state, 5, (0, 20)) == []
    assert feed(state, 6, (0, 20)) == []


def test_meeting_the_target_ends_the_streak_and_a_new_one_alerts_again() -> None:
    state = new_state()
    for minute in range(1, 5):
        first = feed(state, minute, (0, 20))
    assert len(first) == 1
    assert feed(state, 5, (20, 20)) == []
    later = [a for minute in range(6, 10) for a in feed(state, minute, (0, 20))]
    assert [a["alert_id"] for a in later] == [alert_id(KPI.key, "minute", T0 + 7 * MINUTE)]
    assert later[0]["alert_id"] != first[0]["alert_id"]


def test_windows_with_too_few_samples_neither_start_nor_end_a_breach() -> None:
    state = new_state()
    assert feed(state, 1, (0, 4)) == []
    assert state["streak"] is None
    feed(state, 2, (0, 20))
    feed(state, 3, (4, 4))  # meets, but too small: the streak goes on
    feed(state, 4, (0, 20))
    assert len(feed(state, 5, (0, 20))) == 1


def test_a_window_is_judged_only_when_every_partition_reported() -> None:
    rule = BreachRule(window="minute", breach_ms=0, min_samples=1, partitions=2)
    state = new_state()
    assert observe(state, KPI, partial(1, 0, 0, 10), rule, now_ms=1) == []
    # the same partition again (a re-send) does not complete the window
    assert observe(state, KPI, partial(1, 0, 0, 10), rule, now_ms=1) == []
    assert state["evaluated"] is None
    alerts = observe(state, KPI, partial(1, 1, 10, 10), rule, now_ms=1)
    assert len(alerts) == 1
    assert alerts[0]["details"]["denominator"] == "20"
    # a partial of a judged window changes nothing
    assert observe(state, KPI, partial(1, 1, 0, 10, revision=5), rule, now_ms=1) == []


def test_a_higher_revision_replaces_a_partial_and_a_lower_one_is_ignored() -> None:
    rule = BreachRule(window="minute", breach_ms=0, min_samples=1, partitions=2)
    state = new_state()
    observe(state, KPI, partial(1, 0, 10, 10, revision=3), rule, now_ms=1)
    observe(state, KPI, partial(1, 0, 0, 10, revision=2), rule, now_ms=1)
    assert observe(state, KPI, partial(1, 1, 10, 10), rule, now_ms=1) == []  # 20/20 meets
    state2 = new_state()
    observe(state2, KPI, partial(1, 0, 10, 10, revision=3), rule, now_ms=1)
    observe(state2, KPI, partial(1, 0, 0, 10, revision=4), rule, now_ms=1)
    assert len(observe(state2, KPI, partial(1, 1, 10, 10), rule, now_ms=1)) == 1


def test_the_alert_id_is_deterministic_and_the_alert_is_a_valid_event() -> None:
    assert alert_id("online_share", "hour", 123) == alert_id("online_share", "hour", 123)
    assert alert_id("online_share", "hour", 123) != alert_id("online_share", "hour", 124)
    first, second = new_state(), new_state()
    runs = []
    for state in (first, second):
        runs.append([a for minute in range(1, 6) for a in feed(state, minute, (0, 20))])
    assert [a["alert_id"] for a in runs[0]] == [a["alert_id"] for a in runs[1]]
    assert runs[0][0]["event_id"] == runs[1][0]["event_id"]
    codec = build_codec(Settings())
    decoded = codec.decode(codec.encode("alert", runs[0][0]))
    assert decoded.record["alert_id"] == runs[0][0]["alert_id"]


def test_measurements_of_another_window_or_global_ones_are_ignored() -> None:
    state = new_state()
    assert observe(state, KPI, {**partial(1, 0, 0, 10), "window": "hour"}, RULE, now_ms=1) == []
    assert observe(state, KPI, partial(1, -1, 0, 10), RULE, now_ms=1) == []
    assert state["pending"] == {}
