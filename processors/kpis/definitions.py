"""Which KPIs of the CX plan (BRIEF.md §1) the stream computes, from which events, and how.

Each stream KPI is a pair of integer counts per window, ``numerator / denominator`` (or the
numerator alone for counts), so partial counts of different partitions and workers sum exactly.
The rules are the board's (:mod:`dashboards.queries`, rollups in ``sinks/clickhouse/migrations``):

===============================  ===================  =========================================
KPI (dashboards.kpis key)         source event         numerator / denominator of an event
===============================  ===================  =========================================
online_share                      channel_interaction  actions information/service request:
                                                       1 if the channel is online / 1
information_access_score          survey_response      dimension information_access: score / 1
feedback_satisfaction             survey_response      feedback_handling: score >= 80 / 1
personalisation_satisfaction      survey_response      personalisation: score >= 80 / 1
security_satisfaction             survey_response      security: score >= 80 / 1
leakage_incidents                 security_flag        staff principal and severity high or
                                                       critical / 1 (every flag is a sample)
===============================  ===================  =========================================

Not computed in the stream (:data:`NOT_IN_STREAM` says why): the feedback answer-time KPIs and
the personalised-service share.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dashboards.kpis import BY_KEY, LEAKAGE_SEVERITIES, SATISFIED_SCORE, Kpi
from dashboards.queries import REQUEST_ACTIONS
from sinks.clickhouse.tables import ONLINE_CHANNELS

Kind = Literal["share", "mean", "count"]
#: (numerator, denominator) an event adds to a KPI, or None when the event is not in the KPI
Measure = Callable[[Mapping[str, Any]], "tuple[int, int] | None"]

#: the department whose on-call owns each goal of the plan (BRIEF.md §1)
DEPARTMENT_BY_GOAL: dict[int, str] = {1: "it", 2: "customer_service", 3: "it", 4: "risk_control"}

_ONLINE = frozenset(ONLINE_CHANNELS)
_REQUESTS = frozenset(REQUEST_ACTIONS)
_LEAKAGE = frozenset(LEAKAGE_SEVERITIES)


@dataclass(frozen=True)
class StreamKpi:
    """A KPI of :mod:`dashboards.kpis` as the stream computes it from one event type."""

    kpi: Kpi
    source: str
    kind: Kind
    measure: Measure

    @property
    def key(self) -> str:
        return self.kpi.key

    @property
    def target(self) -> float:
        return self.kpi.target

    @property
    def department(self) -> str:
        return DEPARTMENT_BY_GOAL[self.kpi.goal]

    def value(self, numerator: int, denominator: int) -> float:
        """The KPI's value for these counts (0 without samples)."""
        if self.kind == "count":
            return float(numerator)
        return numerator / denominator if denominator else 0.0

    def meets(self, numerator: int, denominator: int) -> bool:
        """The counts meet the target; a share or mean without samples fails nothing."""
        if denominator == 0 and self.kind != "count":
            return True
        value = self.value(numerator, denominator)
        return value >= self.target if self.kpi.better == "higher" else value <= self.target


def online_request(record: Mapping[str, Any]) -> tuple[int, int] | None:
    if record["action"] not in _REQUESTS:
        return None
    return (1 if record["channel"] in _ONLINE else 0, 1)


def survey_mean(dimension: str) -> Measure:
    def measure(record: Mapping[str, Any]) -> tuple[int, int] | None:
        return (int(record["score"]), 1) if record["dimension"] == dimension else None

    return measure


def survey_satisfied(dimension: str) -> Measure:
    def measure(record: Mapping[str, Any]) -> tuple[int, int] | None:
        if record["dimension"] != dimension:
            return None
        return (1 if record["score"] >= SATISFIED_SCORE else 0, 1)

    return measure


def leakage_flag(record: Mapping[str, Any]) -> tuple[int, int] | None:
    staff_leak = record["principal_type"] == "staff" and record["severity"] in _LEAKAGE
    return (1 if staff_leak else 0, 1)


STREAM_KPIS: tuple[StreamKpi, ...] = (
    StreamKpi(BY_KEY["online_share"], "channel_interaction", "share", online_request),
    StreamKpi(
        BY_KEY["information_access_score"],
        "survey_response",
        "mean",
        survey_mean("information_access"),
    ),
    StreamKpi(
        BY_KEY["feedback_satisfaction"],
        "survey_response",
        "share",
        survey_satisfied("feedback_handling"),
    ),
    StreamKpi(
        BY_KEY["personalisation_satisfaction"],
        "survey_response",
        "share",
        survey_satisfied("personalisation"),
    ),
    StreamKpi(
        BY_KEY["security_satisfaction"], "survey_response", "share", survey_satisfied("security")
    ),
    StreamKpi(BY_KEY["leakage_incidents"], "security_flag", "count", leakage_flag),
)

BY_KPI: dict[str, StreamKpi] = {k.key: k for k in STREAM_KPIS}


def by_source(kpis: tuple[StreamKpi, ...] = STREAM_KPIS) -> dict[str, tuple[StreamKpi, ...]]:
    """Event type -> the KPIs computed from it."""
    sources: dict[str, list[StreamKpi]] = {}
    for kpi in kpis:
        sources.setdefault(kpi.source, []).append(kpi)
    return {source: tuple(found) for source, found in sources.items()}


#: KPIs of the board that the stream does not compute, and why
NOT_IN_STREAM: dict[str, str] = {
    "feedback_answered_24h": (
        "judged per item once it is answered or 24 h old, and counted in the window of its "
        "submission: a window's value is final only a day after it closed (the board's "
        "feedback_lifecycle holds it; the SLA-clock processor alerts per item)"
    ),
    "first_response_p50": "an exact quantile: partials of partitions do not sum",
    "first_response_p95": "an exact quantile: partials of partitions do not sum",
    "personalised_share": (
        "distinct customers active and served over the range, from seven event types: needs "
        "per-customer state across topics, which the profile processor holds"
    ),
}
