"""The KPIs of the CX plan (BRIEF.md §1) with their targets: what the scorecard measures.

Targets are the plan's; how each value is computed from events is in :mod:`dashboards.queries`.
Satisfaction KPIs given "in %" by the plan are the share of survey answers that count as
satisfied (score >= 80, as the ``survey_response`` schema defines it); the information-access
KPI is given as a score ("85 points"), so it is the mean score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: a survey score at or above this counts as satisfied (survey_response schema doc)
SATISFIED_SCORE = 80
#: the plan's answer window for customer feedback
ANSWER_WINDOW_SECONDS = 24 * 3600
#: flags on staff principals at these severities count as potential leakage incidents
LEAKAGE_SEVERITIES = ("high", "critical")


@dataclass(frozen=True)
class Kpi:
    key: str
    #: goal of the plan (1 information, 2 feedback, 3 personalisation, 4 security)
    goal: int
    title: str
    target: float
    #: Grafana unit of the value
    unit: str
    #: "higher": green at or above target; "lower": green at or below target
    better: Literal["higher", "lower"]
    description: str

    @property
    def target_text(self) -> str:
        if self.unit == "percentunit":
            value = f"{self.target * 100:g} %"
        elif self.unit == "s":
            value = f"{self.target / 3600:g} h"
        else:
            value = f"{self.target:g}"
        return (">= " if self.better == "higher" else "<= ") + value


KPIS: tuple[Kpi, ...] = (
    Kpi(
        "online_share", 1, "Requests served online", 0.70, "percentunit", "higher",
        "Share of information and service requests (channel_interaction actions "
        "information_request and service_request) made on an online channel: web, app, social "
        "or chat. Target >= 70 %.",
    ),
    Kpi(
        "information_access_score", 1, "Information-access score", 85.0, "none", "higher",
        "Mean 'information_access' survey score (0-100). Target >= 85.",
    ),
    Kpi(
        "feedback_answered_24h", 2, "Feedback answered within 24 h", 1.0, "percentunit", "higher",
        "Of the feedback submitted in the time range whose 24 h answer window has closed or "
        "that was answered, the share whose first response ('responded') came within 24 h of "
        "submission. Items still inside their window are not counted yet. The plan wants every "
        "item answered within 24 h: target 100 %.",
    ),
    Kpi(
        "first_response_p50", 2, "Time to first response p50", ANSWER_WINDOW_SECONDS, "s",
        "lower",
        "Median time from submission to first response of the answered feedback submitted in "
        "the time range (exact quantile). Target <= 24 h.",
    ),
    Kpi(
        "first_response_p95", 2, "Time to first response p95", ANSWER_WINDOW_SECONDS, "s",
        "lower",
        "95th percentile of the time from submission to first response of the answered "
        "feedback submitted in the time range (exact quantile). Target <= 24 h.",
    ),
    Kpi(
        "feedback_satisfaction", 2, "Satisfaction with feedback handling", 0.80, "percentunit",
        "higher",
        "Share of 'feedback_handling' survey answers with a score >= 80. Target >= 80 %.",
    ),
    Kpi(
        "personalised_share", 3, "Active customers served personally", 0.60, "percentunit",
        "higher",
        "Of the customers active in the time range (an identified interaction, transaction, "
        "chat, feedback, product change or reaction to a recommendation), the share who "
        "received personalised service: a recommendation was computed for them or they saw "
        "or reacted to one. Target >= 60 %.",
    ),
    Kpi(
        "personalisation_satisfaction", 3, "Satisfaction with personalised service", 0.90,
        "percentunit", "higher",
        "Share of 'personalisation' survey answers with a score >= 80. Target >= 90 %.",
    ),
    Kpi(
        "leakage_incidents", 4, "Customer-information leakage incidents", 0.0, "short", "lower",
        "Proxy until incidents are recorded as such: security flags raised on staff principals "
        "(bulk record access and exports) with severity high or critical. Target 0.",
    ),
    Kpi(
        "security_satisfaction", 4, "Satisfaction with security", 0.95, "percentunit", "higher",
        "Share of 'security' survey answers with a score >= 80. Target >= 95 %.",
    ),
)  # fmt: skip

BY_KEY: dict[str, Kpi] = {k.key: k for k in KPIS}
GOALS: dict[int, str] = {
    1: "1 · Information is easy to get, on every channel",
    2: "2 · Customer feedback is heard and answered",
    3: "3 · Personalised service",
    4: "4 · Security and privacy",
}
