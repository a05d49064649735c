"""Macro and template-variable expansion, as grafana-clickhouse-datasource v4 and Grafana do it.

Expected texts follow the plugin's ``pkg/macros/macros.go`` (backend macros),
``CHDatasource.applyConditionalAll`` / ``format`` (frontend) and Grafana's
``rangeutil.calculateInterval``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dashboards.errors import MacroError
from dashboards.export import build_all
from dashboards.macros import (
    ALL,
    QueryContext,
    TimeRange,
    Variable,
    expand,
    grafana_interval_ms,
    parse_duration_ms,
    variables_from_board,
)

FROM = datetime(2026, 11, 30, 6, 30, tzinfo=UTC)
TO = datetime(2026, 12, 1, 6, 30, 15, 500_000, tzinfo=UTC)
RANGE = TimeRange(int(FROM.timestamp() * 1000), int(TO.timestamp() * 1000))
FROM_S, TO_S = int(FROM.timestamp()), int(TO.timestamp())
CHANNEL = Variable("channel", ("web", "app", "phone"), (ALL,), multi=True, include_all=True)


def ctx(interval_ms: int = 300_000, **variables: Variable) -> QueryContext:
    return QueryContext(RANGE, interval_ms, {"channel": CHANNEL, **variables})


def test_time_macros_expand_to_epoch_seconds() -> None:
    sql = "SELECT 1 WHERE $__timeFilter(occurred_at) AND x >= $__fromTime AND x <= $__toTime"
    assert expand(sql, ctx()) == (
        f"SELECT 1 WHERE occurred_at >= toDateTime({FROM_S}) AND occurred_at <= "
        f"toDateTime({TO_S}) AND x >= toDateTime({FROM_S}) AND x <= toDateTime({TO_S})"
    )


def test_millisecond_and_date_macros() -> None:
    assert expand("$__timeFilter_ms(t)", ctx()) == (
        f"t >= fromUnixTimestamp64Milli({RANGE.from_ms}) AND "
        f"t <= fromUnixTimestamp64Milli({RANGE.to_ms})"
    )
    assert expand("$__dateFilter( d )", ctx()) == (
        "d >= toDate('2026-11-30') AND d <= toDate('2026-12-01')"
    )
    assert expand("$__timeFrom(t) AND $__timeTo(t)", ctx()) == (
        f"t >= toDateTime({FROM_S}) AND t <= toDateTime({TO_S})"
    )


def test_interval_macros_use_whole_seconds() -> None:
    assert expand("intDiv(x, $__interval_s)", ctx(300_000)) == "intDiv(x, 300)"
    assert expand("$__interval_s", ctx(200)) == "1"  # at least one second
    # kept as the plugin writes it, so a panel using it fails on 18.16 like in Grafana
    assert expand("$__timeInterval(t)", ctx(60_000)) == (
        "toStartOfInterval(toDateTime(t), INTERVAL 60 second)"
    )


def test_macro_arguments_may_hold_function_calls() -> None:
    assert expand("$__timeFilter(toDateTime(intDiv(a, 1000)))", ctx()) == (
        f"toDateTime(intDiv(a, 1000)) >= toDateTime({FROM_S}) AND "
        f"toDateTime(intDiv(a, 1000)) <= toDateTime({TO_S})"
    )


def test_conditional_all_drops_the_filter_for_all() -> None:
    sql = "WHERE $__conditionalAll(channel IN (${channel}), $channel)"
    assert expand(sql, ctx()) == "WHERE 1=1"
    some = CHANNEL.select(["web", "app"])
    assert expand(sql, ctx(channel=some)) == "WHERE channel IN ('web','app')"
    one = CHANNEL.select(["phone"])
    assert expand(sql, ctx(channel=one)) == "WHERE channel IN ('phone')"


def test_multi_value_variables_are_quoted_and_all_means_every_option() -> None:
    assert expand("x IN (${channel})", ctx()) == "x IN ('web','app','phone')"
    assert expand("x IN ($channel)", ctx(channel=CHANNEL.select(["app"]))) == "x IN ('app')"
    assert expand("x IN ([[channel]])", ctx()) == "x IN ('web','app','phone')"
    assert expand("x IN (${channel:singlequote})", ctx()) == "x IN ('web','app','phone')"


def test_single_value_variables_are_inserted_raw() -> None:
    # the plugin's formatter quotes arrays only: a single-value variable needs quotes in SQL
    db = Variable("db", ("cxstream",), ("cxstream",))
    assert expand("SELECT * FROM ${db}.t", ctx(db=db)) == "SELECT * FROM cxstream.t"


def test_grafana_global_variables() -> None:
    sql = "$__from $__to $__interval_ms $__range_s"
    assert expand(sql, ctx(60_000)) == (
        f"{RANGE.from_ms} {RANGE.to_ms} 60000 {(RANGE.to_ms - RANGE.from_ms) // 1000}"
    )


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT $nope", "unknown template variable $nope"),
        ("SELECT $__unknownMacro(x)", "$__unknownMacro is not a macro"),
        ("$__timeFilter(a, b)", "expects 1 argument, received 2"),
        ("$__timeFilter(a", "unbalanced"),
        ("$__conditionalAll(x IN ($y), $y)", "unknown variable 'y'"),
        ("${channel:json}", "format 'json'"),
    ],
)
def test_what_the_plugin_would_send_broken_fails_here(sql: str, message: str) -> None:
    with pytest.raises(MacroError, match=message.replace("$", r"\$").replace("(", r"\(")):
        expand(sql, ctx())


def test_selections_are_checked_against_the_options() -> None:
    with pytest.raises(MacroError, match="not among its options"):
        CHANNEL.select(["fax"])
    with pytest.raises(MacroError, match="takes one value"):
        Variable("v", ("a", "b"), ("a",)).select(["a", "b"])


def test_grafana_interval() -> None:
    day = TimeRange(0, 86_400_000)
    # 86.4 s per point rounds to 1 m; a panel minimum wins when it is larger
    assert grafana_interval_ms(day) == 60_000
    assert grafana_interval_ms(day, min_interval="1h") == 3_600_000
    week = TimeRange(0, 7 * 86_400_000)
    assert grafana_interval_ms(week) == 600_000  # 604.8 s -> 10 m
    assert grafana_interval_ms(week, max_data_points=100) == 7_200_000  # 6048 s -> 2 h
    assert parse_duration_ms("500ms") == 500
    with pytest.raises(MacroError):
        parse_duration_ms("soon")


def test_board_variables_are_read_from_the_exported_json() -> None:
    boards = build_all()
    feedback = variables_from_board(boards["cx-feedback-sla"])
    assert set(feedback) == {"department", "channel"}
    assert feedback["department"].options == ("customer_service", "it", "risk_control")
    assert feedback["department"].is_all
    assert feedback["department"].multi
    assert "email" in feedback["channel"].options  # the feedback channel enum, not the web one
    pipeline = variables_from_board(boards["cx-pipeline"])
    assert "dlq" in pipeline["event_type"].options
