"""The five boards: CX scorecard, Feedback & SLA, Security, Personalisation, Pipeline health.

Each board has a stable uid (:data:`BOARD_UIDS`: links, provisioning and ``push`` rely on it),
UTC time (the rollups are UTC buckets) and template variables built from the Avro enums.
:func:`build_boards` returns the SDK dashboard models in a fixed order; panel ids are assigned
in layout order so they are stable too.
"""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.models import dashboard

from dashboards import queries as q
from dashboards.kpis import BY_KEY, GOALS
from dashboards.panels import (
    FULL,
    HALF,
    barchart_panel,
    enum_variable,
    kpi_stat,
    row,
    stat_panel,
    table_panel,
    thresholds,
    timeseries_panel,
    values_variable,
)
from schemas import load_catalog

BOARD_UIDS: dict[str, str] = {
    "scorecard": "cx-scorecard",
    "feedback": "cx-feedback-sla",
    "security": "cx-security",
    "personalisation": "cx-personalisation",
    "pipeline": "cx-pipeline",
}
TAG = "cxstream"
KPI_STAT = (4, 7)
KPI_TREND = (8, 7)


def _board(key: str, title: str, description: str, time_from: str) -> dashboard_builders.Dashboard:
    return (
        dashboard_builders.Dashboard(title)
        .uid(BOARD_UIDS[key])
        .description(description)
        .tags([TAG, key])
        .timezone("utc")
        .time(time_from, "now")
        .refresh("1m")
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
        .readonly()
        .annotations([])
        .link(
            dashboard_builders.DashboardLink("cxstream boards")
            .type(dashboard.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(False)
            .keep_time(True)
        )
    )


def _channel_variable(schema: str = "survey_response") -> dashboard_builders.CustomVariable:
    return enum_variable(
        "channel", "Channel", schema, "channel", f"Channel of the {schema} events shown."
    )


def _department_variable() -> dashboard_builders.CustomVariable:
    return enum_variable(
        "department",
        "Department",
        "feedback_submitted",
        "department",
        "Department that owns the feedback (the alert's owning department for SLA alerts).",
    )


# -- 1. CX scorecard ----------------------------------------------------------------------------


def _kpi_pair(
    board: dashboard_builders.Dashboard, key: str, stat_sql: str, trend_sql: str, interval: str
) -> dashboard_builders.Dashboard:
    kpi = BY_KEY[key]
    return board.with_panel(kpi_stat(kpi, stat_sql, size=KPI_STAT)).with_panel(
        timeseries_panel(
            f"{kpi.title} · trend",
            trend_sql,
            f"{kpi.title} per interval, with the target ({kpi.target_text}) dashed.",
            unit=kpi.unit,
            size=KPI_TREND,
            min_interval=interval,
            kpi=kpi,
        )
    )


def scorecard() -> dashboard_builders.Dashboard:
    board = _board(
        "scorecard",
        "CX scorecard",
        "Every target of the CX plan, computed live from the events: green at target, red "
        "below. Survey KPIs follow the Channel variable (where the survey was answered).",
        "now-7d",
    ).with_variable(_channel_variable())
    plan = {"department": False, "channel": False}  # plan-level: every department and channel
    board = board.with_row(row(GOALS[1]))
    board = _kpi_pair(board, "online_share", q.ONLINE_SHARE, q.ONLINE_SHARE_TREND, "1h")
    board = _kpi_pair(
        board,
        "information_access_score",
        q.survey_score("information_access"),
        q.survey_score_trend("information_access"),
        "1h",
    )
    board = board.with_panel(
        timeseries_panel(
            "Information and service requests by channel",
            q.REQUESTS_BY_CHANNEL,
            "Requests per interval on each channel (web, app, social and chat are online).",
            size=(24, 7),
            bars=True,
            stacked=True,
        )
    )
    board = board.with_row(row(GOALS[2]))
    board = _kpi_pair(
        board,
        "feedback_answered_24h",
        q.answered_within_24h(**plan),
        q.answered_within_24h_trend(**plan),
        "1h",
    )
    board = _kpi_pair(
        board,
        "feedback_satisfaction",
        q.survey_satisfaction("feedback_handling"),
        q.survey_satisfaction_trend("feedback_handling"),
        "1h",
    )
    p50, p95 = BY_KEY["first_response_p50"], BY_KEY["first_response_p95"]
    board = (
        board.with_panel(kpi_stat(p50, q.first_response(0.5, **plan), size=KPI_STAT))
        .with_panel(kpi_stat(p95, q.first_response(0.95, **plan), size=KPI_STAT))
        .with_panel(
            timeseries_panel(
                "Time to first response · trend",
                q.first_response_trend(**plan),
                "p50 and p95 of the time to first response, by submission time, with the 24 h "
                "target dashed.",
                unit="s",
                size=(16, 7),
                kpi=p95,
            )
        )
    )
    board = board.with_row(row(GOALS[3]))
    board = _kpi_pair(
        board, "personalised_share", q.PERSONALISED_SHARE, q.PERSONALISED_SHARE_TREND, "1d"
    )
    board = _kpi_pair(
        board,
        "personalisation_satisfaction",
        q.survey_satisfaction("personalisation"),
        q.survey_satisfaction_trend("personalisation"),
        "1h",
    )
    board = board.with_row(row(GOALS[4]))
    board = _kpi_pair(
        board, "leakage_incidents", q.LEAKAGE_INCIDENTS, q.LEAKAGE_INCIDENTS_TREND, "1h"
    )
    return _kpi_pair(
        board,
        "security_satisfaction",
        q.survey_satisfaction("security"),
        q.survey_satisfaction_trend("security"),
        "1h",
    )


# -- 2. Feedback & SLA --------------------------------------------------------------------------


def feedback() -> dashboard_builders.Dashboard:
    wide = (4, 5)
    answered, p95 = BY_KEY["feedback_answered_24h"], BY_KEY["first_response_p95"]
    return (
        _board(
            "feedback",
            "Feedback & SLA",
            "Customer feedback and its 24 h answer SLA, for Customer Service. Items are those "
            "submitted in the time range; ages and 'past the window' are measured from now.",
            "now-7d",
        )
        .with_variable(_department_variable())
        .with_variable(_channel_variable("feedback_submitted"))
        .with_row(row("SLA"))
        .with_panel(
            stat_panel("Submitted", q.FEEDBACK_SUBMITTED, "Feedback items submitted.", size=wide)
        )
        .with_panel(
            stat_panel(
                "Open",
                q.FEEDBACK_OPEN,
                "Items submitted in the range that are not resolved yet.",
                size=wide,
            )
        )
        .with_panel(kpi_stat(answered, q.answered_within_24h(), size=wide))
        .with_panel(kpi_stat(p95, q.first_response(0.95), size=wide))
        .with_panel(
            stat_panel(
                "SLA breaches",
                q.SLA_BREACHES,
                "Distinct items whose 24 h answer deadline passed without a response "
                "(feedback_sla alerts of level breach).",
                size=wide,
                steps=_alarm_steps(),
            )
        )
        .with_panel(
            stat_panel(
                "Escalations",
                q.SLA_ESCALATIONS,
                "Distinct escalation alerts (levels escalation_1..3) of overdue items.",
                size=wide,
                steps=_alarm_steps(),
            )
        )
        .with_row(row("Backlog"))
        .with_panel(
            barchart_panel(
                "Open feedback by age and department",
                q.FEEDBACK_OPEN_BY_AGE,
                "Unresolved items by how long ago they were submitted.",
                stacked=True,
            )
        )
        .with_panel(
            table_panel(
                "Oldest open feedback",
                q.FEEDBACK_OLDEST_OPEN,
                "The 20 oldest unresolved items (no text: free text never lands by default).",
            )
        )
        .with_row(row("Trends"))
        .with_panel(
            timeseries_panel(
                "Submitted by department",
                q.FEEDBACK_SUBMITTED_BY_DEPARTMENT,
                "Feedback items submitted per interval.",
                bars=True,
                stacked=True,
            )
        )
        .with_panel(
            timeseries_panel(
                "Answered within 24 h",
                q.answered_within_24h_trend(),
                answered.description,
                unit="percentunit",
                kpi=answered,
            )
        )
        .with_panel(
            timeseries_panel(
                "Time to first response",
                q.first_response_trend(),
                "p50 and p95 of the time to first response, by submission time.",
                unit="s",
                kpi=p95,
            )
        )
        .with_panel(
            timeseries_panel(
                "SLA warnings, breaches and escalations",
                q.SLA_ALERTS_BY_LEVEL,
                "feedback_sla alerts per level (distinct alert ids).",
                min_interval="1m",
                bars=True,
                stacked=True,
            )
        )
        .with_row(row("Alerts"))
        .with_panel(
            table_panel(
                "Recent SLA alerts",
                q.SLA_RECENT_ALERTS,
                "Latest feedback_sla alerts; late_s is how long after its due time an alert "
                "fired (non-zero after downtime).",
                size=FULL,
            )
        )
    )


def _alarm_steps() -> dashboard_builders.ThresholdsConfig:
    # counts of things that should not happen: red from the first one
    return thresholds([(None, "green"), (1, "red")])


# -- 3. Security --------------------------------------------------------------------------------


def security() -> dashboard_builders.Dashboard:
    quarter = (6, 5)
    leakage = BY_KEY["leakage_incidents"]
    return (
        _board(
            "security",
            "Security",
            "Security flags of the access-anomaly detection and staff access to customer "
            "records, for Risk Control.",
            "now-24h",
        )
        .with_variable(
            enum_variable(
                "severity", "Severity", "security_flag", "severity", "Severity of the flags."
            )
        )
        .with_variable(
            enum_variable(
                "principal_type",
                "Principal",
                "security_flag",
                "principal_type",
                "Kind of principal flagged (customer or staff).",
            )
        )
        .with_row(row("Overview"))
        .with_panel(stat_panel("Flags", q.FLAGS_TOTAL, "Security flags raised.", size=quarter))
        .with_panel(
            stat_panel(
                "High and critical flags",
                q.FLAGS_HIGH,
                "Flags of severity high or critical.",
                size=quarter,
                steps=_alarm_steps(),
            )
        )
        .with_panel(kpi_stat(leakage, q.LEAKAGE_INCIDENTS, size=quarter))
        .with_panel(
            stat_panel(
                "Customer records accessed by staff",
                q.STAFF_RECORDS,
                "Records touched by staff record views and exports.",
                size=quarter,
            )
        )
        .with_row(row("Flags"))
        .with_panel(
            timeseries_panel(
                "Flags by rule",
                q.FLAGS_BY_RULE,
                "Flags per interval by the rule that fired ('anomaly_score' for the model).",
                min_interval="1m",
                bars=True,
                stacked=True,
            )
        )
        .with_panel(
            timeseries_panel(
                "Flags by severity",
                q.FLAGS_BY_SEVERITY,
                "Flags per interval by severity.",
                min_interval="1m",
                bars=True,
                stacked=True,
            )
        )
        .with_panel(
            table_panel(
                "Top flagged principals",
                q.TOP_FLAGGED_PRINCIPALS,
                "Principals with the most flags, their worst severity and the rules that fired.",
            )
        )
        .with_panel(
            table_panel("Recent flags", q.RECENT_FLAGS, "Latest flags with their explanation.")
        )
        .with_row(row("Staff record access"))
        .with_panel(
            timeseries_panel(
                "Staff record access by team",
                q.STAFF_RECORDS_BY_TEAM,
                "Customer records viewed or exported by staff, per team.",
                min_interval="1m",
                stacked=True,
            )
        )
        .with_panel(
            timeseries_panel(
                "Customer access events",
                q.CUSTOMER_ACCESS_BY_ACTION,
                "Customer logins, login failures, password resets and device changes.",
                min_interval="1m",
            )
        )
        .with_panel(
            table_panel(
                "Top staff by records accessed",
                q.TOP_STAFF_ACCESS,
                "Staff members who viewed or exported the most customer records.",
                size=FULL,
            )
        )
    )


# -- 4. Personalisation -------------------------------------------------------------------------


def personalisation() -> dashboard_builders.Dashboard:
    small = (4, 5)
    return (
        _board(
            "personalisation",
            "Personalisation",
            "Recommendations served, how customers react to them and how many active "
            "customers get personalised service. The Channel variable filters reactions.",
            "now-7d",
        )
        .with_variable(_channel_variable("recommendation_feedback"))
        .with_row(row("Overview"))
        .with_panel(
            stat_panel(
                "Lists served",
                q.RECOMMENDATION_LISTS,
                "Recommendation lists computed.",
                size=small,
            )
        )
        .with_panel(
            stat_panel(
                "Impressions",
                q.RECOMMENDATION_IMPRESSIONS,
                "Recommended items shown.",
                size=small,
            )
        )
        .with_panel(
            stat_panel(
                "Click rate",
                q.CLICK_RATE,
                "Clicks per impression.",
                unit="percentunit",
                size=small,
            )
        )
        .with_panel(
            stat_panel(
                "Conversion rate",
                q.CONVERT_RATE,
                "Conversions per impression.",
                unit="percentunit",
                size=small,
            )
        )
        .with_panel(kpi_stat(BY_KEY["personalised_share"], q.PERSONALISED_SHARE, size=small))
        .with_panel(
            kpi_stat(
                BY_KEY["personalisation_satisfaction"],
                q.survey_satisfaction("personalisation", by_channel=False),
                size=small,
            )
        )
        .with_row(row("Serving"))
        .with_panel(
            timeseries_panel(
                "Lists served by policy",
                q.RECOMMENDATION_LISTS_BY_POLICY,
                "Recommendation lists per interval and policy.",
                stacked=True,
            )
        )
        .with_panel(
            timeseries_panel(
                "Click, conversion and dismissal rates",
                q.REACTION_RATES_TREND,
                "Reactions per impression.",
                unit="percentunit",
            )
        )
        .with_panel(
            timeseries_panel(
                "Active customers and those served personally",
                q.ACTIVE_CUSTOMERS_TREND,
                "Distinct active customers per interval and how many of them were served.",
                min_interval="1d",
                bars=True,
            )
        )
        .with_panel(
            timeseries_panel(
                "Share of active customers served personally",
                q.PERSONALISED_SHARE_TREND,
                BY_KEY["personalised_share"].description,
                unit="percentunit",
                min_interval="1d",
                kpi=BY_KEY["personalised_share"],
            )
        )
        .with_row(row("Model quality"))
        .with_panel(
            timeseries_panel(
                "Click rate by model version",
                q.MODEL_CLICK_RATE_TREND,
                "Clicks per impression of the lists each model version produced.",
                unit="percentunit",
                min_interval="1m",
            )
        )
        .with_panel(
            barchart_panel(
                "Reactions by channel",
                q.REACTIONS_BY_CHANNEL,
                "Impressions, clicks, dismissals and conversions per channel.",
            )
        )
        .with_panel(
            table_panel(
                "Policies and model versions",
                q.POLICY_QUALITY,
                "Per policy and model version: lists that got reactions, exploration share, "
                "click and conversion rates.",
                size=FULL,
            )
        )
    )


# -- 5. Pipeline health -------------------------------------------------------------------------


def pipeline() -> dashboard_builders.Dashboard:
    quarter = (6, 5)
    event_types = [*load_catalog().names(), "dlq"]
    return (
        _board(
            "pipeline",
            "Pipeline health",
            "Events landing in ClickHouse per topic, dead letters, sink batch latency and "
            "size, and the delay from occurred_at to insert, for IT.",
            "now-6h",
        )
        .refresh("30s")
        .with_variable(
            values_variable(
                "event_type",
                "Event type",
                event_types,
                "Event type of the topic (the part after the topic prefix).",
            )
        )
        .with_row(row("Overview"))
        .with_panel(stat_panel("Events in", q.EVENTS_IN, "Rows inserted.", size=quarter))
        .with_panel(
            stat_panel(
                "Dead letters",
                q.DEAD_LETTERS,
                "Messages that reached the dead-letter topic.",
                size=quarter,
                steps=_alarm_steps(),
            )
        )
        .with_panel(
            stat_panel(
                "Insert latency p95",
                q.INSERT_P95_MS,
                "95th percentile of one batch insert into ClickHouse.",
                unit="ms",
                size=quarter,
            )
        )
        .with_panel(
            stat_panel(
                "Max end-to-end delay",
                q.DELAY_MAX_MS,
                "Longest delay from an event's occurred_at to its insert.",
                unit="ms",
                size=quarter,
            )
        )
        .with_row(row("Flow"))
        .with_panel(
            timeseries_panel(
                "Events in per topic",
                q.EVENTS_IN_BY_TOPIC,
                "Rows inserted per interval and topic (sink_offsets).",
                min_interval="1m",
                stacked=True,
            )
        )
        .with_panel(
            timeseries_panel(
                "Dead letters by reason",
                q.DEAD_LETTERS_BY_REASON,
                "Dead letters per interval by reason (truncated, bad_body, unstorable, "
                "clickhouse_rejected...).",
                min_interval="1m",
                bars=True,
                stacked=True,
            )
        )
        .with_panel(
            table_panel(
                "Dead letters by source",
                q.DEAD_LETTERS_TABLE,
                "Dead letters grouped by source topic, reason, step and error class.",
                size=FULL,
            )
        )
        .with_row(row("ClickHouse sink"))
        .with_panel(
            timeseries_panel(
                "Batch latency",
                q.BATCH_LATENCY,
                "Insert latency (p50, p95, max) and whole-batch latency (p95).",
                unit="ms",
                min_interval="1m",
            )
        )
        .with_panel(
            timeseries_panel(
                "Batch size",
                q.BATCH_SIZE,
                "Rows per batch (mean, max) and replayed rows the fence skipped.",
                min_interval="1m",
            )
        )
        .with_panel(
            timeseries_panel(
                "End-to-end delay",
                q.END_TO_END_DELAY,
                "Delay from occurred_at to insert, mean and max per interval.",
                unit="ms",
                min_interval="1m",
            )
        )
        .with_panel(
            table_panel(
                "Sink by topic",
                q.SINK_BY_TOPIC,
                "Batches, rows, fenced replays, dead letters, retried batches and delay per topic.",
                size=HALF,
            )
        )
        .with_panel(
            table_panel(
                "Sink workers",
                q.SINK_WORKERS,
                "Sink processes seen in the range and their last batch.",
                size=FULL,
            )
        )
    )


BUILDERS: dict[str, Callable[[], dashboard_builders.Dashboard]] = {
    "scorecard": scorecard,
    "feedback": feedback,
    "security": security,
    "personalisation": personalisation,
    "pipeline": pipeline,
}


def build_boards() -> list[dashboard.Dashboard]:
    """The five boards as SDK models, panel ids assigned in layout order."""
    boards = []
    for build in BUILDERS.values():
        model = build().build()
        for number, panel in enumerate(model.panels or [], start=1):
            panel.id_val = number
        boards.append(model)
    return boards
