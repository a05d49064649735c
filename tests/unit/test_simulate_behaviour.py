"""The simulated bank behaves as configured: channel mix, feedback delays, surveys, rhythm."""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cxstream.simulate import (
    ListLabelSink,
    SimEvent,
    SimulationConfig,
    build_population,
    generate,
    parse_start,
)
from cxstream.simulate.config import DAY_MS, HOUR_MS, ONLINE_CHANNELS

START = parse_start("2026-12-01T00:00:00+08:00")  # Tuesday, local midnight
ZONE = ZoneInfo("Asia/Shanghai")
REQUESTS = ("information_request", "service_request")
RESHAPED_SHARES = {
    "web": 0.10, "app": 0.15, "social": 0.05, "chat": 0.10,
    "phone": 0.25, "branch": 0.25, "atm": 0.10,
}  # fmt: skip
_DECIMAL = re.compile(r"-?\d+\.\d{4,}")  # a leaked float shows many decimals


def _local(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, ZONE)


@pytest.fixture(scope="module")
def busy() -> tuple[SimulationConfig, list[SimEvent], ListLabelSink]:
    """Three weekdays with plenty of feedback and surveys (enough samples for shares/means)."""
    config = SimulationConfig(
        start_ms=START,
        duration_ms=3 * DAY_MS,
        customers=600,
        seed=21,
        feedback_per_visit=0.5,
        survey_per_visit=0.5,
        card_payments_per_customer_per_day=0.3,
    )
    labels = ListLabelSink()
    return config, list(generate(config, labels)), labels


@pytest.fixture(scope="module")
def reshaped() -> tuple[SimulationConfig, list[SimEvent]]:
    """Other shares than the defaults: the output must follow the config, not constants."""
    config = SimulationConfig(
        start_ms=START,
        duration_ms=3 * DAY_MS,
        customers=600,
        seed=22,
        channel_shares=RESHAPED_SHARES,
        visits_per_customer_per_day=3.0,
        feedback_per_visit=0.25,
        unanswered_share=0.3,
        late_feedback_share=0.0,
        card_payments_per_customer_per_day=0.0,
        anonymous_browsing_per_customer_per_day=0.0,
        scenarios={},
    )
    return config, list(generate(config))


def _request_shares(events: list[SimEvent]) -> dict[str, float]:
    channels = Counter(
        r["channel"] for n, r in events if n == "channel_interaction" and r["action"] in REQUESTS
    )
    total = sum(channels.values())
    return {channel: count / total for channel, count in channels.items()}


def _first_response_delays(
    config: SimulationConfig, events: list[SimEvent]
) -> tuple[dict[str, int], dict[str, int | None]]:
    """feedback id -> submission time, and -> time to first response (None: not responded)."""
    submitted = {r["feedback_id"]: r["occurred_at"] for n, r in events if n == "feedback_submitted"}
    first: dict[str, int | None] = dict.fromkeys(submitted)
    for name, r in events:
        first_response = name == "feedback_status_changed" and r["status"] == "responded"
        if first_response and first.get(r["feedback_id"]) is None:
            first[r["feedback_id"]] = r["occurred_at"] - submitted[r["feedback_id"]]
    return submitted, first


def _unanswered_share(config: SimulationConfig, events: list[SimEvent]) -> tuple[float, int]:
    submitted, delays = _first_response_delays(config, events)
    end = config.start_ms + (config.duration_ms or 0)
    # only items whose 24 h window closed inside the run can be judged
    judged = [f for f, t in submitted.items() if t < end - DAY_MS]
    late = [f for f in judged if delays[f] is None or delays[f] > DAY_MS]  # type: ignore[operator]
    return len(late) / len(judged), len(judged)


def test_channel_mix_of_requests_matches_the_default_shares(
    busy: tuple[SimulationConfig, list[SimEvent], ListLabelSink],
) -> None:
    config, events, _ = busy
    shares = _request_shares(events)
    for channel, share in config.channel_shares.items():
        assert shares[channel] == pytest.approx(share, abs=0.02), channel
    online = sum(shares[c] for c in ONLINE_CHANNELS)
    assert online >= 0.70  # the plan's KPI
    assert online == pytest.approx(0.75, abs=0.02)


def test_channel_mix_follows_configured_shares(
    reshaped: tuple[SimulationConfig, list[SimEvent]],
) -> None:
    config, events = reshaped
    shares = _request_shares(events)
    for channel, share in config.channel_shares.items():
        assert shares[channel] == pytest.approx(share, abs=0.02), channel


def test_every_visit_has_exactly_one_request_on_its_channel(
    reshaped: tuple[SimulationConfig, list[SimEvent]],
) -> None:
    config, events = reshaped
    requests = sum(1 for n, r in events if n == "channel_interaction" and r["action"] in REQUESTS)
    expected = config.customers * config.visits_per_customer_per_day * 3
    assert requests == pytest.approx(expected, rel=0.06)


def test_unanswered_share_is_as_configured(
    busy: tuple[SimulationConfig, list[SimEvent], ListLabelSink],
    reshaped: tuple[SimulationConfig, list[SimEvent]],
) -> None:
    share, judged = _unanswered_share(busy[0], busy[1])
    assert judged > 800
    assert share == pytest.approx(busy[0].unanswered_share, abs=0.03)
    share, judged = _unanswered_share(reshaped[0], reshaped[1])
    assert judged > 800
    assert share == pytest.approx(0.3, abs=0.05)


def test_answered_feedback_has_realistic_delays_and_lifecycle(
    busy: tuple[SimulationConfig, list[SimEvent], ListLabelSink],
) -> None:
    config, events, _ = busy
    _, delays = _first_response_delays(config, events)
    answered = sorted(d for d in delays.values() if d is not None and d <= DAY_MS)
    p50 = answered[len(answered) // 2] / HOUR_MS
    p95 = answered[int(len(answered) * 0.95)] / HOUR_MS
    assert 1.0 < p50 < 6.0
    assert 8.0 < p95 < 24.0
    statuses = Counter(r["status"] for n, r in events if n == "feedback_status_changed")
    assert set(statuses) == {
        "acknowledged", "responded", "awaiting_customer", "resolved", "reopened", "assigned",
    }  # fmt: skip
    # every status change follows its item's submission, in lifecycle order per item
    submitted = {r["feedback_id"]: r["occurred_at"] for n, r in events if n == "feedback_submitted"}
    seen: dict[str, list[str]] = defaultdict(list)
    for name, r in events:
        if name == "feedback_status_changed":
            assert r["occurred_at"] > submitted[r["feedback_id"]]
            seen[r["feedback_id"]].append(r["status"])
    assert all(s[0] == "acknowledged" for s in seen.values())


def test_late_feedback_arrives_hours_after_submission(
    busy: tuple[SimulationConfig, list[SimEvent], ListLabelSink],
    reshaped: tuple[SimulationConfig, list[SimEvent]],
) -> None:
    def late_items(events: list[SimEvent]) -> tuple[list[int], int]:
        clock, lags, total = 0, [], 0
        for name, r in events:
            if name == "feedback_submitted":
                total += 1
                if r["occurred_at"] < clock - HOUR_MS // 2:
                    lags.append(clock - r["occurred_at"])
            clock = max(clock, r["occurred_at"])
        return lags, total

    lags, total = late_items(busy[1])
    low, high = busy[0].late_feedback_delay_ms
    assert len(lags) / total == pytest.approx(busy[0].late_feedback_share, abs=0.02)
    assert all(lag <= high + HOUR_MS for lag in lags)
    assert max(lags) > low
    lags, _ = late_items(reshaped[1])
    assert lags == []  # late_feedback_share=0


def test_survey_means_are_near_the_plan_targets(
    busy: tuple[SimulationConfig, list[SimEvent], ListLabelSink],
) -> None:
    config, events, _ = busy
    scores: dict[str, list[int]] = defaultdict(list)
    for name, r in events:
        if name == "survey_response":
            assert 0 <= r["score"] <= 100
            scores[r["dimension"]].append(r["score"])
    assert set(scores) == set(config.survey_means)
    for dimension, mean in config.survey_means.items():
        sample = scores[dimension]
        assert len(sample) > 200, dimension
        # four standard errors (a customer answers several surveys, so be generous), >= 2 points
        tolerance = max(2.0, 4 * statistics.stdev(sample) / math.sqrt(len(sample)))
        assert statistics.mean(sample) == pytest.approx(mean, abs=tolerance), dimension


def test_daily_rhythm_peaks_late_morning(
    busy: tuple[SimulationConfig, list[SimEvent], ListLabelSink],
) -> None:
    _, events, _ = busy
    hours = Counter(
        _local(r["occurred_at"]).hour
        for n, r in events
        if n == "channel_interaction"  # customer activity only, no start-of-run snapshot
    )
    assert hours[11] > 4 * hours[3]
    assert hours[20] > 2 * hours[3]


def test_weekends_are_quieter_and_branches_close_on_sunday() -> None:
    saturday = parse_start("2026-12-05T00:00:00+08:00")
    config = SimulationConfig(
        start_ms=saturday - 3 * DAY_MS, duration_ms=5 * DAY_MS, customers=300, seed=4,
        scenarios={}, card_payments_per_customer_per_day=0.0,
    )  # fmt: skip
    per_day: Counter[str] = Counter()
    branch_days: Counter[str] = Counter()
    for name, r in generate(config):
        if name == "channel_interaction" and r["action"] in REQUESTS:
            day = _local(r["occurred_at"]).strftime("%a")
            per_day[day] += 1
            if r["channel"] == "branch":
                branch_days[day] += 1
    weekday = (per_day["Wed"] + per_day["Thu"] + per_day["Fri"]) / 3
    assert per_day["Sat"] < 0.9 * weekday
    assert per_day["Sun"] < 0.9 * weekday
    assert branch_days["Sun"] == 0
    assert branch_days["Wed"] > 0


def test_staff_work_their_office_hours(
    busy: tuple[SimulationConfig, list[SimEvent], ListLabelSink],
) -> None:
    config, events, labels = busy
    population = build_population(config)
    staff = {s.staff_id: s for s in population.staff}
    injected = {event_id for label in labels.labels for event_id in label.event_ids}
    views = 0
    for name, r in events:
        if name != "access_event" or r["principal_type"] != "staff":
            continue
        assert r["target_customer_id"] is not None
        if r["event_id"] in injected or r["principal_id"] not in staff:
            continue  # bulk-access scenario, or a service account (24/7)
        member = staff[r["principal_id"]]
        local = _local(r["occurred_at"])
        assert member.on_shift(local.weekday() * 24 + local.hour), (member, local)
        assert r["staff_team"] == member.team
        views += 1
    assert views > 1000
    office = [s for s in population.staff if s.team in ("branch", "risk_control", "marketing")]
    assert all(s.shift_start_hour >= 9 for s in office)
    assert all(s.shift_start_hour + s.shift_hours <= 18 for s in office)


def test_hidden_preferences_never_appear_in_events(
    busy: tuple[SimulationConfig, list[SimEvent], ListLabelSink],
) -> None:
    config, events, _ = busy
    population = build_population(config)
    hidden: set[float] = set()
    for customer in population.customers:
        hidden.update(customer.preferences.values())
        hidden.add(customer.satisfaction)
        hidden.add(customer.activity)
        hidden.add(customer.spend_scale)
    hidden_text = {f"{value:.4f}" for value in hidden}
    forbidden_keys = ("preference", "affinity", "satisfaction", "propensity", "activity")
    for name, record in events:
        for key, value in record.items():
            assert not any(word in key for word in forbidden_keys), (name, key)
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, float):
                    assert item not in hidden, (name, key)
                elif isinstance(item, str):
                    for number in _DECIMAL.findall(item):  # e.g. smuggled into free text
                        assert f"{float(number):.4f}" not in hidden_text, (name, key, item)


def test_hidden_preferences_drive_clicks_and_conversions(
    busy: tuple[SimulationConfig, list[SimEvent], ListLabelSink],
) -> None:
    """What a recommender must learn is really in the feedback: liked products get clicked."""
    config, events, _ = busy
    preferences = {c.customer_id: c.preferences for c in build_population(config).customers}
    shown: Counter[bool] = Counter()
    clicked: Counter[bool] = Counter()
    converted: dict[str, int] = Counter()
    for name, r in events:
        if name != "recommendation_feedback":
            continue
        liked = preferences[r["customer_id"]][r["product_id"]] > 0.0
        if r["action"] == "impression":
            shown[liked] += 1
        elif r["action"] == "click":
            clicked[liked] += 1
        elif r["action"] == "convert":
            converted[r["recommendation_id"]] += 1
    assert shown[True] > 500
    assert shown[False] > 500
    ctr_liked = clicked[True] / shown[True]
    ctr_other = clicked[False] / shown[False]
    assert ctr_liked > 2 * ctr_other
    opened_from_recs = {
        r["recommendation_id"]
        for n, r in events
        if n == "product_holding_changed" and r["recommendation_id"] is not None
    }
    assert opened_from_recs == set(converted)


def test_customers_opted_out_of_personalisation_get_no_recommendations(
    busy: tuple[SimulationConfig, list[SimEvent], ListLabelSink],
) -> None:
    _, events, _ = busy
    opted_out: dict[str, int] = {}
    for name, r in events:
        if name == "consent_changed" and r["consent"] == "personalisation":
            if r["granted"]:
                opted_out.pop(r["customer_id"], None)
            else:
                opted_out[r["customer_id"]] = r["occurred_at"]
        elif name == "recommendation_feedback" and r["action"] == "impression":
            assert r["customer_id"] not in opted_out
    assert opted_out  # some customers did opt out


def test_spending_follows_each_customers_habits(
    busy: tuple[SimulationConfig, list[SimEvent], ListLabelSink],
) -> None:
    _, events, _ = busy
    by_customer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for name, r in events:
        if name == "transaction" and r["source"] == "card-switch":
            assert r["amount_minor"] > 0
            assert r["direction"] == "debit"
            by_customer[r["customer_id"]].append(r)
    assert len(by_customer) > 100
    medians = sorted(
        statistics.median(math.log(t["amount_minor"]) for t in txs)
        for txs in by_customer.values()
        if len(txs) >= 2
    )
    # customers differ in what they spend (segments and personal scale), not one global draw
    assert medians[-len(medians) // 10] - medians[len(medians) // 10] > 1.0


def test_erased_customers_go_quiet() -> None:
    config = SimulationConfig(
        start_ms=START, duration_ms=2 * DAY_MS, customers=300, seed=8,
        erasure_per_customer_per_day=0.05, scenarios={},
    )  # fmt: skip
    events = list(generate(config))
    erased = {r["customer_id"]: r["occurred_at"] for n, r in events if n == "erasure_requested"}
    assert len(erased) > 5
    for name, r in events:
        if name in ("channel_interaction", "transaction", "chat_session"):
            who = r["customer_id"]
        elif name == "access_event" and r["principal_type"] == "customer":
            who = r["principal_id"]
        else:
            continue
        if who in erased:
            assert r["occurred_at"] < erased[who], (name, r)
