"""KPI rules of the stream against a hand-computed small example (no services)."""

from __future__ import annotations

from typing import Any

from dashboards.kpis import KPIS
from processors.kpis.definitions import BY_KPI, NOT_IN_STREAM, STREAM_KPIS, by_source


def totals(source: str, records: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for kpi in by_source()[source]:
        numerator = denominator = 0
        for record in records:
            measured = kpi.measure(record)
            if measured is not None:
                numerator += measured[0]
                denominator += measured[1]
        out[kpi.key] = (numerator, denominator)
    return out


def test_online_share_counts_information_and_service_requests_only() -> None:
    records = [
        {"channel": "web", "action": "information_request"},
        {"channel": "app", "action": "service_request"},
        {"channel": "chat", "action": "information_request"},
        {"channel": "phone", "action": "service_request"},
        {"channel": "branch", "action": "information_request"},
        {"channel": "web", "action": "search"},
        {"channel": "branch", "action": "transaction"},
    ]
    # online requests: web, app, chat = 3 of 5 requests
    assert totals("channel_interaction", records) == {"online_share": (3, 5)}
    kpi = BY_KPI["online_share"]
    assert kpi.value(3, 5) == 0.6
    assert not kpi.meets(3, 5)
    assert kpi.meets(7, 10)


def test_survey_kpis_per_dimension() -> None:
    answers = [
        ("information_access", 90), ("information_access", 70), ("information_access", 95),
        ("security", 95), ("security", 79), ("security", 80),
        ("feedback_handling", 100), ("personalisation", 10), ("overall", 100),
    ]  # fmt: skip
    records = [{"dimension": d, "score": s} for d, s in answers]
    assert totals("survey_response", records) == {
        "information_access_score": (255, 3),  # mean 85: meets ">= 85"
        "security_satisfaction": (2, 3),  # 79 is not satisfied, 80 is
        "feedback_satisfaction": (1, 1),
        "personalisation_satisfaction": (0, 1),
    }
    assert BY_KPI["information_access_score"].meets(255, 3)
    assert not BY_KPI["information_access_score"].meets(254, 3)
    assert not BY_KPI["security_satisfaction"].meets(2, 3)


def test_leakage_incidents_are_high_or_critical_flags_on_staff() -> None:
    flags = [
        ("staff", "critical"), ("staff", "high"), ("staff", "medium"),
        ("customer", "critical"), ("customer", "low"),
    ]  # fmt: skip
    records = [{"principal_type": p, "severity": s} for p, s in flags]
    assert totals("security_flag", records) == {"leakage_incidents": (2, 5)}
    kpi = BY_KPI["leakage_incidents"]
    assert kpi.value(2, 5) == 2.0
    assert not kpi.meets(2, 5)
    assert kpi.meets(0, 5)
    assert kpi.meets(0, 0)


def test_every_board_kpi_is_either_in_the_stream_or_explained() -> None:
    board = {k.key for k in KPIS}
    stream = {k.key for k in STREAM_KPIS}
    assert stream | set(NOT_IN_STREAM) == board
    assert not stream & set(NOT_IN_STREAM)


def test_departments_follow_the_goal_owners() -> None:
    assert BY_KPI["online_share"].department == "it"
    assert BY_KPI["feedback_satisfaction"].department == "customer_service"
    assert BY_KPI["personalisation_satisfaction"].department == "it"
    assert BY_KPI["leakage_incidents"].department == "risk_control"
    assert BY_KPI["security_satisfaction"].department == "risk_control"


def test_a_share_without_samples_is_zero_and_fails_nothing() -> None:
    kpi = BY_KPI["security_satisfaction"]
    assert kpi.value(0, 0) == 0.0
    assert kpi.meets(0, 0)
