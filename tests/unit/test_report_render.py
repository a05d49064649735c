"""The report page and its options, without ClickHouse: escaping, target colours, ids, dates."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import click
import pytest

from cxstream.report.cli import default_out, parse_when
from cxstream.report.data import (
    DepartmentSla,
    FlaggedPrincipal,
    KpiTrend,
    Period,
    PersonalisationFigures,
    PolicyQuality,
    ReportData,
    SecurityFigures,
)
from cxstream.report.render import render
from dashboards.kpis import BY_KEY, KPIS, Kpi
from dashboards.scorecard import KpiValue

HOSTILE = '<script>alert("x")</script>'
NOW = datetime(2026, 12, 9, 10, 30, tzinfo=UTC)


def meeting(kpi: Kpi, meets: bool) -> float:
    """A value on the right or the wrong side of ``kpi``'s target."""
    step = max(abs(kpi.target) * 0.1, 1.0 if kpi.unit != "percentunit" else 0.05)
    better = kpi.target + step if kpi.better == "higher" else max(kpi.target - step, 0.0)
    worse = kpi.target - step if kpi.better == "higher" else kpi.target + step
    if kpi.better == "lower" and kpi.target == 0:
        better = 0.0
    return better if meets else worse


def report_data(values: dict[str, float | None], *, rule: str = "brute_force") -> ReportData:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    period = Period(int(start.timestamp() * 1000), int(start.timestamp() * 1000) + 3 * 86_400_000)
    kpis = tuple(KpiValue(k, values.get(k.key)) for k in KPIS)
    trends = tuple(KpiTrend(v.kpi, tuple((d, v.value) for d in period.days())) for v in kpis)
    by_key = {v.kpi.key: v for v in kpis}
    return ReportData(
        period=period,
        generated_at=NOW,
        backend="chdb test",
        coverage={"channel_interaction": 10, "security_flag": 1},
        kpis=kpis,
        trends=trends,
        sla=(
            DepartmentSla("all", 3, 1, values.get("feedback_answered_24h"), 60, 90, 1, 0),
            DepartmentSla("it", 3, 1, values.get("feedback_answered_24h"), 60, 90, 1, 0),
        ),
        security=SecurityFigures(
            flags=1,
            high_or_critical=1,
            leakage_incidents=0,
            by_rule_severity={rule: {"high": 1}},
            severities=("low", "medium", "high", "critical"),
            top_principals=(FlaggedPrincipal("abcdefgh", "customer", 1, "high", rule, "x"),),
        ),
        personalisation=PersonalisationFigures(
            10,
            30,
            0.1,
            0.01,
            by_key["personalised_share"],
            by_key["personalisation_satisfaction"],
            (PolicyQuality(rule, "v1 & v2", 3, 30, 0.1, None),),
        ),
    )


def kpi_rows(page: str) -> dict[str, str]:
    """KPI title -> CSS class of its value cell in the KPI table."""
    table = page.split('<section id="kpis">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'title="[^"]*">([^<]+)</td>\s*<td class="(\w+)"', table)
    return dict(rows)


def test_values_are_green_at_target_and_red_below() -> None:
    meets = {k.key: index % 2 == 0 for index, k in enumerate(KPIS)}
    page = render(report_data({k.key: meeting(k, meets[k.key]) for k in KPIS}))
    classes = kpi_rows(page)
    assert classes == {k.title: "ok" if meets[k.key] else "miss" for k in KPIS}
    assert f"<strong>{sum(meets.values())} of {len(KPIS)}</strong>" in page


def test_a_period_without_data_says_so() -> None:
    page = render(report_data({}))
    assert set(kpi_rows(page).values()) == {"nodata"}
    assert "<strong>0 of 0</strong>" in page
    assert page.count("no data") >= len(KPIS)


def test_database_values_are_escaped() -> None:
    page = render(report_data({}, rule=HOSTILE))
    assert HOSTILE not in page
    assert "&lt;script&gt;" in page
    assert "v1 &amp; v2" in page
    assert "<script" not in page


def test_svg_ids_are_unique_in_the_page() -> None:
    page = render(report_data({k.key: meeting(k, True) for k in KPIS}))
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) > 20
    duplicates = [i for i in set(ids) if ids.count(i) > 1]
    assert duplicates == []
    # every local reference points at an id of the page
    assert set(re.findall(r"url\(#([^)]+)\)", page)) <= set(ids)


def test_answered_target_is_the_plans() -> None:
    page = render(report_data({}))
    assert f"target {BY_KEY['feedback_answered_24h'].target_text}" in page.replace("&gt;", ">")


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("now", False, NOW),
        ("7d", False, NOW - timedelta(days=7)),
        ("12h", False, NOW - timedelta(hours=12)),
        ("30m", False, NOW - timedelta(minutes=30)),
        ("2w", False, NOW - timedelta(weeks=2)),
        ("2026-12-01", False, datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12-01", True, datetime(2026, 12, 1, 23, 59, 59, tzinfo=UTC)),
        ("2026-12-01T08:15", False, datetime(2026, 12, 1, 8, 15, tzinfo=UTC)),
        ("2026-12-01T08:15+08:00", False, datetime(2026, 12, 1, 0, 15, tzinfo=UTC)),
    ],
)
def test_parse_when(text: str, end: bool, expected: datetime) -> None:
    assert parse_when(text, now=NOW, end=end) == expected


@pytest.mark.parametrize("text", ["yesterday", "7x", "2026-13-01", ""])
def test_parse_when_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(click.BadParameter, match="ISO date"):
        parse_when(text, now=NOW)


def test_default_file_name_names_the_period() -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    name = default_out(start, start + timedelta(days=7, seconds=-1)).name
    assert name == "report-20261201T0000Z-20261207T2359Z.html"


def test_period_days_cover_partial_days() -> None:
    start = datetime(2026, 12, 1, 22, tzinfo=UTC)
    period = Period(int(start.timestamp() * 1000), int(start.timestamp() * 1000) + 4 * 3_600_000)
    assert period.days() == [date(2026, 12, 1), date(2026, 12, 2)]
