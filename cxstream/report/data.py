"""The figures of a QA report for a period, read from ClickHouse with the boards' own SQL.

Every number here is what a Grafana board shows for the same time range: KPI stats and trends
come from the exported CX scorecard (:func:`dashboards.scorecard.scorecard_values` and its
trend panels, re-expanded with a one-day interval), SLA figures per department from the
Feedback & SLA board with its ``department`` variable set, security figures from the Security
board (its ``severity`` variable gives the rule x severity table) and personalisation figures
from the Personalisation board. Only the coverage counts (events per type, by event time) have
their own SQL: no board shows them.

Principals are pseudonymised here (keyed HMAC, :mod:`cxstream.privacy`) before anything is
kept: the raw ``security_flag`` table holds principal ids in clear, the report never does.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cxstream.errors import ServiceError
from cxstream.privacy import pseudonymise
from cxstream.settings import Settings
from dashboards.datasource import JSON_DIR
from dashboards.kpis import BY_KEY, KPIS, Kpi
from dashboards.macros import ALL, QueryContext, TimeRange, expand, variables_from_board
from dashboards.queries import first_response
from dashboards.runner import PanelQuery, QueryResult, panel_queries, run_query, run_sql
from dashboards.scorecard import KpiValue, scorecard_values
from sinks.clickhouse.backend import ClickHouseBackend, check_identifier
from sinks.clickhouse.tables import event_tables

DAY_MS = 86_400_000
TREND_SUFFIX = " · trend"
#: the scorecard's one trend panel that carries two KPIs, by column
_TWO_KPI_TREND = {
    "Time to first response · trend": {
        "p50": "first_response_p50",
        "p95": "first_response_p95",
    }
}


@dataclass(frozen=True)
class Period:
    """The report's period, epoch ms, ``end_ms`` inclusive (as a board's time range)."""

    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        if self.end_ms < self.start_ms:
            raise ValueError(f"report period: end {self.end_ms} is before start {self.start_ms}")

    @property
    def time_range(self) -> TimeRange:
        return TimeRange(self.start_ms, self.end_ms)

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(self.start_ms / 1000, UTC)

    @property
    def end(self) -> datetime:
        return datetime.fromtimestamp(self.end_ms / 1000, UTC)

    def days(self) -> list[date]:
        """The UTC days the period touches, in order (a trend has one point per day)."""
        first, last = self.start.date(), self.end.date()
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]


@dataclass(frozen=True)
class KpiTrend:
    kpi: Kpi
    #: one value per day of the period (``None``: no data that day)
    points: tuple[tuple[date, float | None], ...]


@dataclass(frozen=True)
class DepartmentSla:
    #: a department of the plan, or ``"all"`` for every department together
    department: str
    submitted: float | None
    open: float | None
    answered_24h: float | None
    first_response_p50: float | None
    first_response_p95: float | None
    breaches: float | None
    escalations: float | None

    @property
    def meets_target(self) -> bool | None:
        return KpiValue(BY_KEY["feedback_answered_24h"], self.answered_24h).meets_target


@dataclass(frozen=True)
class FlaggedPrincipal:
    pseudonym: str
    kind: str
    flags: int
    worst: str
    rules: str
    last_flag: str


@dataclass(frozen=True)
class SecurityFigures:
    flags: int
    high_or_critical: int
    leakage_incidents: int
    #: rule -> severity -> flags
    by_rule_severity: dict[str, dict[str, int]]
    severities: tuple[str, ...]
    top_principals: tuple[FlaggedPrincipal, ...]

    @property
    def by_rule(self) -> dict[str, int]:
        return {rule: sum(counts.values()) for rule, counts in self.by_rule_severity.items()}

    @property
    def by_severity(self) -> dict[str, int]:
        return {
            s: sum(c.get(s, 0) for c in self.by_rule_severity.values()) for s in self.severities
        }


@dataclass(frozen=True)
class PolicyQuality:
    policy: str
    model_version: str
    lists_with_reactions: int
    impressions: int
    click_rate: float | None
    convert_rate: float | None


@dataclass(frozen=True)
class PersonalisationFigures:
    lists_served: float | None
    impressions: float | None
    click_rate: float | None
    convert_rate: float | None
    personalised_share: KpiValue
    satisfaction: KpiValue
    policies: tuple[PolicyQuality, ...]


@dataclass(frozen=True)
class ReportData:
    period: Period
    generated_at: datetime
    backend: str
    #: event type -> events in the period (by event time, duplicates collapsed)
    coverage: dict[str, int]
    kpis: tuple[KpiValue, ...]
    trends: tuple[KpiTrend, ...]
    sla: tuple[DepartmentSla, ...]
    security: SecurityFigures
    personalisation: PersonalisationFigures
    #: queries run and the wall time the whole collection took
    queries: int = 0
    collect_ms: float = 0.0


@dataclass
class _Boards:
    """Runs panels of the exported boards on one backend, counting queries and their time."""

    backend: ClickHouseBackend
    time_range: TimeRange
    boards: dict[str, dict[str, Any]] = field(default_factory=dict)
    queries: int = 0
    query_ms: float = 0.0

    def board(self, uid: str) -> dict[str, Any]:
        if uid not in self.boards:
            path = JSON_DIR / f"{uid}.json"
            try:
                self.boards[uid] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ServiceError(f"report: cannot read the exported board {path}: {exc}") from exc
        return self.boards[uid]

    def panel(
        self,
        uid: str,
        title: str,
        selections: Mapping[str, str | Sequence[str]] | None = None,
        *,
        interval_ms: int | None = None,
    ) -> list[QueryResult]:
        """The results of every target of the panel ``title`` (one per target)."""
        queries = [
            q
            for q in panel_queries(self.board(uid), self.time_range, selections=selections)
            if q.title == title
        ]
        if not queries:
            raise ServiceError(f"report: board {uid!r} has no panel titled {title!r}")
        if interval_ms is not None:
            variables = self._variables(uid, selections)
            context = QueryContext(self.time_range, interval_ms, variables)
            queries = [
                replace(q, sql=expand(q.raw_sql, context), interval_ms=interval_ms) for q in queries
            ]
        return [self.run(q) for q in queries]

    def stat(
        self, uid: str, title: str, selections: Mapping[str, str | Sequence[str]] | None = None
    ) -> float | None:
        return first_number(self.panel(uid, title, selections)[0].rows)

    def sql(
        self, uid: str, raw_sql: str, selections: Mapping[str, str | Sequence[str]] | None = None
    ) -> float | None:
        """A board query that has no panel of its own on ``uid``, with that board's variables."""
        context = QueryContext(self.time_range, DAY_MS, self._variables(uid, selections))
        query = PanelQuery(uid, 0, "report", "stat", "A", raw_sql, expand(raw_sql, context), DAY_MS)
        return first_number(self.run(query).rows)

    def run(self, query: PanelQuery) -> QueryResult:
        result = run_query(self.backend, query)
        self.queries += 1
        self.query_ms += result.elapsed_ms
        return result

    def options(self, uid: str, variable: str) -> tuple[str, ...]:
        return variables_from_board(self.board(uid))[variable].options

    def _variables(
        self, uid: str, selections: Mapping[str, str | Sequence[str]] | None
    ) -> dict[str, Any]:
        variables = variables_from_board(self.board(uid))
        for name, value in (selections or {}).items():
            variables[name] = variables[name].select(value)
        return variables


def first_number(rows: Sequence[Sequence[Any]]) -> float | None:
    """The first numeric cell (a stat panel's value); ``None`` for no rows, NULL or NaN."""
    for row in rows:
        for cell in row:
            number = _number(cell)
            if number is not None:
                return number
    return None


def _number(cell: Any) -> float | None:
    if cell is None or isinstance(cell, bool):
        return None
    try:
        number = float(cell)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _day(cell: Any) -> date:
    """A bucket's day: the server returns datetimes, chdb's JSON gives 'YYYY-MM-DD hh:mm:ss'."""
    if isinstance(cell, datetime):
        return cell.date()
    return datetime.fromisoformat(str(cell)).date()


def collect(backend: ClickHouseBackend, period: Period, settings: Settings) -> ReportData:
    """Every figure of the report for ``period``."""
    started = time.perf_counter()
    boards = _Boards(backend, period.time_range)
    kpis = tuple(scorecard_values(backend, period.time_range))
    boards.queries += len(KPIS)  # scorecard_values runs one stat per KPI
    data = ReportData(
        period=period,
        generated_at=datetime.now(UTC),
        backend=f"{backend.kind} {backend.server_version()}",
        coverage=coverage(boards),
        kpis=kpis,
        trends=trends(boards, period),
        sla=sla_by_department(boards),
        security=security(boards, settings),
        personalisation=personalisation(boards, kpis),
    )
    elapsed_ms = (time.perf_counter() - started) * 1000
    return replace(data, queries=boards.queries, collect_ms=elapsed_ms)


def coverage(boards: _Boards) -> dict[str, int]:
    """Events per type whose event time is in the period (one query over every raw table)."""
    tr = boards.time_range
    database = check_identifier(boards.backend.database, "clickhouse.database")
    parts = [
        f"SELECT '{t.name}' AS event_type, count() AS n FROM {database}.{t.name} FINAL "
        f"WHERE occurred_at >= toDateTime({tr.from_s}) AND occurred_at <= toDateTime({tr.to_s})"
        for t in event_tables()
    ]
    try:
        result = run_sql(boards.backend, " UNION ALL ".join(parts))
    except Exception as exc:  # the driver's or chdb's own error types
        raise ServiceError(
            f"report: counting events per type on ClickHouse {boards.backend.kind} failed: {exc}"
        ) from exc
    boards.queries += 1
    boards.query_ms += result.elapsed_ms
    counts = {str(name): int(n) for name, n in result.rows}
    return {t.name: counts.get(t.name, 0) for t in event_tables()}


def trends(boards: _Boards, period: Period) -> tuple[KpiTrend, ...]:
    """One value per UTC day for every KPI, from the scorecard's trend panels."""
    by_title = {kpi.title: kpi.key for kpi in KPIS}
    series: dict[str, dict[date, float | None]] = {}
    board = boards.board("cx-scorecard")
    titles = [p["title"] for p in board.get("panels", []) if p.get("type") == "timeseries"]
    for title in titles:
        targets = _TWO_KPI_TREND.get(title)
        if targets is None:
            key = by_title.get(title.removesuffix(TREND_SUFFIX))
            if key is None or not title.endswith(TREND_SUFFIX):
                continue  # a trend of no KPI (requests by channel)
            targets = {"": key}  # the one value column, whatever its name
        for result in boards.panel("cx-scorecard", title, interval_ms=DAY_MS):
            names = [name for name, _ in result.columns]
            value_columns = [n for n in names if n != "time"]
            for row in result.rows:
                cells = dict(zip(names, row, strict=True))
                day = _day(cells["time"])
                for column, kpi_key in targets.items():
                    cell = cells[column] if column else cells[value_columns[0]]
                    series.setdefault(kpi_key, {})[day] = _number(cell)
    out = []
    for kpi in KPIS:
        values = series.get(kpi.key, {})
        # a count with no row that day is a day without any (the rollup has no zero rows)
        empty = 0.0 if kpi.unit == "short" else None
        out.append(KpiTrend(kpi, tuple((d, values.get(d, empty)) for d in period.days())))
    return tuple(out)


def sla_by_department(boards: _Boards) -> tuple[DepartmentSla, ...]:
    """The Feedback & SLA board's figures for all departments, then for each one."""
    uid = "cx-feedback-sla"
    rows = []
    for department in ("all", *boards.options(uid, "department")):
        selection = {"department": [department] if department != "all" else ALL}
        rows.append(
            DepartmentSla(
                department=department,
                submitted=boards.stat(uid, "Submitted", selection),
                open=boards.stat(uid, "Open", selection),
                answered_24h=boards.stat(uid, BY_KEY["feedback_answered_24h"].title, selection),
                # the board shows p95 only; p50 is the scorecard's query with the same filters
                first_response_p50=boards.sql(uid, first_response(0.5), selection),
                first_response_p95=boards.stat(uid, BY_KEY["first_response_p95"].title, selection),
                breaches=boards.stat(uid, "SLA breaches", selection),
                escalations=boards.stat(uid, "Escalations", selection),
            )
        )
    return tuple(rows)


def security(boards: _Boards, settings: Settings) -> SecurityFigures:
    uid = "cx-security"
    severities = boards.options(uid, "severity")
    table: dict[str, dict[str, int]] = {}
    for severity in severities:
        for result in boards.panel(uid, "Flags by rule", {"severity": [severity]}):
            names = [name for name, _ in result.columns]
            for row in result.rows:
                cells = dict(zip(names, row, strict=True))
                counts = table.setdefault(str(cells["rule"]), {})
                counts[severity] = counts.get(severity, 0) + int(_number(cells["n_flags"]) or 0)
    principals = []
    for result in boards.panel(uid, "Top flagged principals"):
        names = [name for name, _ in result.columns]
        for row in result.rows:
            cells = dict(zip(names, row, strict=True))
            principals.append(
                FlaggedPrincipal(
                    pseudonym=pseudonymise(str(cells["principal"]), settings),
                    kind=str(cells["kind"]),
                    flags=int(_number(cells["n_flags"]) or 0),
                    worst=str(cells["worst"]),
                    rules=str(cells["rules"]),
                    last_flag=str(cells["last_flag"]),
                )
            )
    return SecurityFigures(
        flags=int(boards.stat(uid, "Flags") or 0),
        high_or_critical=int(boards.stat(uid, "High and critical flags") or 0),
        leakage_incidents=int(boards.stat(uid, BY_KEY["leakage_incidents"].title) or 0),
        by_rule_severity=dict(sorted(table.items(), key=lambda kv: -sum(kv[1].values()))),
        severities=severities,
        top_principals=tuple(principals),
    )


def personalisation(boards: _Boards, kpis: Sequence[KpiValue]) -> PersonalisationFigures:
    uid = "cx-personalisation"
    by_key = {v.kpi.key: v for v in kpis}
    policies = []
    for result in boards.panel(uid, "Policies and model versions"):
        names = [name for name, _ in result.columns]
        for row in result.rows:
            cells = dict(zip(names, row, strict=True))
            policies.append(
                PolicyQuality(
                    policy=str(cells["policy"]),
                    model_version=str(cells["model_version"]),
                    lists_with_reactions=int(_number(cells["lists_with_reactions"]) or 0),
                    impressions=int(_number(cells["impressions"]) or 0),
                    click_rate=_number(cells["click_rate"]),
                    convert_rate=_number(cells["convert_rate"]),
                )
            )
    return PersonalisationFigures(
        lists_served=boards.stat(uid, "Lists served"),
        impressions=boards.stat(uid, "Impressions"),
        click_rate=boards.stat(uid, "Click rate"),
        convert_rate=boards.stat(uid, "Conversion rate"),
        personalised_share=by_key["personalised_share"],
        satisfaction=by_key["personalisation_satisfaction"],
        policies=tuple(policies),
    )
