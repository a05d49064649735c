"""The QA report's figures on a simulated store, against figures computed from the events.

The store is the board contract tests' (two simulated days pushed through the real sink into
embedded chdb); :func:`tests.unit.test_dashboards_sql.expected_kpis` recomputes the KPIs in
Python from the generated events, independently of any SQL.
"""

from __future__ import annotations

import html.parser
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from cxstream.privacy import pseudonymise
from cxstream.report.cli import report
from cxstream.report.data import Period, ReportData, collect
from cxstream.settings import Settings, load_settings
from dashboards.macros import TimeRange
from dashboards.testing import SimulatedData, load, simulate
from sinks.clickhouse.backend import make_backend
from sinks.clickhouse.migrations import migrate
from sinks.clickhouse.testing import shared_chdb_path
from tests.unit.test_dashboards_sql import (
    DAY_MS,
    Store,
    boundary_feedback,
    expected_kpis,
    simulation_config,
)

KEY = "report-test-key"


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    database = f"t_report_{uuid.uuid4().hex[:10]}"
    base = Settings()
    settings = base.model_copy(
        update={
            "clickhouse": base.clickhouse.model_copy(
                update={"host": None, "chdb_path": shared_chdb_path(), "database": database}
            ),
            "kafka": base.kafka.model_copy(update={"topic_prefix": database}),
            "privacy": base.privacy.model_copy(update={"pseudonym_key": SecretStr(KEY)}),
        }
    )
    backend = make_backend(settings)
    try:
        migrate(backend)
        data = simulate(simulation_config())
        data.events.extend(boundary_feedback(data.start_ms))
        yield Store(settings, backend, data, load(settings, backend, data))
    finally:
        backend.execute(f"DROP DATABASE IF EXISTS {database}")
        backend.close()


@pytest.fixture(scope="module")
def both_days(store: Store) -> ReportData:
    whole = store.day(0)
    return collect(
        store.backend, period(TimeRange(whole.from_ms, store.day(1).to_ms)), store.settings
    )


def period(time_range: TimeRange) -> Period:
    return Period(time_range.from_ms, time_range.to_ms)


def within(record: dict[str, Any], time_range: TimeRange) -> bool:
    return time_range.from_s <= record["occurred_at"] // 1000 <= time_range.to_s


def both(store: Store) -> TimeRange:
    return TimeRange(store.day(0).from_ms, store.day(1).to_ms)


def only_department(data: SimulatedData, department: str) -> SimulatedData:
    """The same events with only ``department``'s feedback items."""
    events = [
        (name, record)
        for name, record in data.events
        if name != "feedback_submitted" or record["department"] == department
    ]
    return SimulatedData(data.config, events, data.labels)


@pytest.mark.parametrize("day", [0, 1])
def test_kpis_equal_the_kpis_computed_from_the_events(store: Store, day: int) -> None:
    time_range = store.day(day)
    expected = expected_kpis(store.data, time_range, int(time.time()))
    data = collect(store.backend, period(time_range), store.settings)
    measured = {v.kpi.title: v.value for v in data.kpis}
    assert measured == pytest.approx({t: float(v) for t, v in expected.items()}, rel=1e-9)


def test_trend_has_each_days_kpis(store: Store, both_days: ReportData) -> None:
    now = int(time.time())
    days = [expected_kpis(store.data, store.day(d), now) for d in (0, 1)]
    for trend in both_days.trends:
        assert [day for day, _ in trend.points] == both_days.period.days()
        assert len(trend.points) == 2
        values = [value for _, value in trend.points]
        assert values == pytest.approx([float(d[trend.kpi.title]) for d in days], rel=1e-9)
    # the two days differ, so a trend repeating the period's value would fail
    assert any(a[t] != b[t] for a, b in [days] for t in a)


def test_sla_by_department_equals_the_events(store: Store, both_days: ReportData) -> None:
    now = int(time.time())
    time_range = both(store)
    rows = {row.department: row for row in both_days.sla}
    assert set(rows) == {"all", "customer_service", "it", "risk_control"}
    overall = {v.kpi.key: v.value for v in both_days.kpis}
    assert rows["all"].answered_24h == pytest.approx(overall["feedback_answered_24h"])
    assert rows["all"].first_response_p50 == pytest.approx(overall["first_response_p50"])
    assert rows["all"].first_response_p95 == pytest.approx(overall["first_response_p95"])
    alerts = [r for r in store.data.of("alert") if within(r, time_range)]
    submitted = [r for r in store.data.of("feedback_submitted") if within(r, time_range)]
    for department in ("customer_service", "it", "risk_control"):
        row = rows[department]
        assert row.submitted == sum(r["department"] == department for r in submitted)
        mine = [a for a in alerts if a["department"] == department]
        assert row.breaches == sum(a["level"] == "breach" for a in mine)
        assert row.escalations == sum(a["level"].startswith("escalation_") for a in mine)
        expected = expected_kpis(only_department(store.data, department), time_range, now)
        assert row.answered_24h == pytest.approx(expected["Feedback answered within 24 h"])
        assert row.first_response_p50 == expected["Time to first response p50"]
        assert row.first_response_p95 == expected["Time to first response p95"]
    assert sum(rows[d].submitted or 0 for d in rows if d != "all") == rows["all"].submitted
    # some department misses the 24 h target, another meets more of it: not all equal
    assert len({rows[d].answered_24h for d in rows if d != "all"}) > 1


def test_security_flags_by_rule_and_severity(store: Store, both_days: ReportData) -> None:
    flags = [r for r in store.data.of("security_flag") if within(r, both(store))]
    assert flags, "the simulation injects attacks"
    security = both_days.security
    expected = Counter((r["rule"], r["severity"]) for r in flags)
    measured = Counter(
        {(rule, sev): n for rule, c in security.by_rule_severity.items() for sev, n in c.items()}
    )
    assert measured == expected
    assert security.flags == len(flags)
    assert security.high_or_critical == sum(r["severity"] in ("high", "critical") for r in flags)
    assert sum(security.by_severity.values()) == len(flags)


def test_top_principals_are_pseudonyms_only(store: Store, both_days: ReportData) -> None:
    flags = [r for r in store.data.of("security_flag") if within(r, both(store))]
    principals = {r["principal_id"] for r in flags}
    shown = {p.pseudonym for p in both_days.security.top_principals}
    assert shown == {pseudonymise(p, store.settings) for p in principals}
    assert not shown & principals
    per_principal = Counter(r["principal_id"] for r in flags)
    assert sorted(p.flags for p in both_days.security.top_principals) == sorted(
        per_principal.values()
    )


def test_personalisation_results(store: Store, both_days: ReportData) -> None:
    time_range = both(store)
    reactions = [r for r in store.data.of("recommendation_feedback") if within(r, time_range)]
    impressions = sum(r["action"] == "impression" for r in reactions)
    figures = both_days.personalisation
    assert figures.lists_served == sum(
        within(r, time_range) for r in store.data.of("recommendation")
    )
    assert figures.impressions == impressions
    assert figures.click_rate == pytest.approx(
        sum(r["action"] == "click" for r in reactions) / impressions
    )
    assert figures.convert_rate == pytest.approx(
        sum(r["action"] == "convert" for r in reactions) / impressions
    )
    assert {q.policy for q in figures.policies} == {
        r["policy"] for r in store.data.of("recommendation") if within(r, time_range)
    }


def test_coverage_counts_events_per_type(store: Store, both_days: ReportData) -> None:
    expected = Counter(name for name, r in store.data.events if within(r, both(store)))
    assert {k: v for k, v in both_days.coverage.items() if v} == dict(expected)
    assert set(both_days.coverage) >= set(expected)


class _Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: Counter[str] = Counter()
        self.text: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.links += [v or "" for k, v in attrs if k in {"src", "href"}]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_cli_writes_a_page_without_personal_data(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.delenv("CX_CLICKHOUSE__HOST", raising=False)
    monkeypatch.setenv("CX_CLICKHOUSE__CHDB_PATH", str(shared_chdb_path()))
    monkeypatch.setenv("CX_CLICKHOUSE__DATABASE", store.settings.clickhouse.database)
    monkeypatch.setenv("CX_PRIVACY__PSEUDONYM_KEY", KEY)
    # the CLI reads load_settings(), cached per process: an earlier test may have filled it
    load_settings.cache_clear()
    first = time.strftime("%Y-%m-%d", time.gmtime(store.data.start_ms / 1000))
    last = time.strftime("%Y-%m-%d", time.gmtime((store.data.start_ms + DAY_MS) / 1000))
    try:
        result = CliRunner().invoke(report, ["--from", first, "--to", last], catch_exceptions=False)
    finally:
        load_settings.cache_clear()  # later tests must not see this test's environment
    assert result.exit_code == 0, result.output
    written = list(tmp_path.glob("report-*.html"))
    assert len(written) == 1, result.output
    page = written[0].read_text(encoding="utf-8")
    parser = _Page()
    parser.feed(page)
    text = " ".join(parser.text)
    # the values are those of the period (the CLI's --to date includes the whole day)
    data = collect(store.backend, period(both(store)), store.settings)
    for value in data.kpis:
        assert value.kpi.title in text
        assert value.text in text
    assert parser.tags["svg"] == 3 + len(data.trends)
    assert parser.tags["script"] == 0
    assert [link for link in parser.links if not link.startswith("#")] == []
    # no identifier or contact of any event reaches the page in clear
    clear = {
        str(record[name])
        for _, record in store.data.events
        for name in ("customer_id", "principal_id", "target_customer_id", "contact_email")
        if record.get(name)
    }
    assert clear
    found = set(re.findall(r"[CS]\d{5,8}", page)) | {c for c in clear if "@" in c and c in page}
    assert not found & clear
