"""Run a board's panel queries on ClickHouse, as Grafana would, and check what comes back.

:func:`panel_queries` lists every target of a board with what Grafana would send for it
(:mod:`dashboards.macros`: the panel's interval, the variables' selections). :func:`run_sql` runs
SQL in the board database (the datasource's default database, here ``backend.database``) and
returns column names and ClickHouse types. :func:`shape_problems` says whether the result fits
the panel type: a time series needs a DateTime column and a number, a stat a number, a bar chart
a label and a number; a table takes anything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dashboards.errors import PanelQueryError
from dashboards.export import panels
from dashboards.macros import (
    DEFAULT_MAX_DATA_POINTS,
    QueryContext,
    TimeRange,
    Variable,
    expand,
    grafana_interval_ms,
    variables_from_board,
)
from sinks.clickhouse.backend import (
    ChdbBackend,
    ClickHouseBackend,
    ServerBackend,
    check_identifier,
)

_NUMERIC = ("UInt", "Int", "Float", "Decimal")


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel, with its SQL as ClickHouse receives it."""

    board: str
    panel_id: int
    title: str
    panel_type: str
    ref_id: str
    raw_sql: str
    sql: str
    interval_ms: int

    @property
    def name(self) -> str:
        return f"{self.board}/{self.panel_id} {self.title!r} ({self.ref_id})"


@dataclass
class QueryResult:
    columns: list[tuple[str, str]]
    rows: list[tuple[Any, ...]]
    elapsed_ms: float = 0.0

    @property
    def types(self) -> dict[str, str]:
        return dict(self.columns)


@dataclass
class PanelCheck:
    query: PanelQuery
    result: QueryResult | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def panel_queries(
    board: Mapping[str, Any],
    time_range: TimeRange,
    *,
    selections: Mapping[str, str | Sequence[str]] | None = None,
    max_data_points: int = DEFAULT_MAX_DATA_POINTS,
) -> list[PanelQuery]:
    """Every target of ``board`` expanded for ``time_range`` and the variable ``selections``
    (variables not named keep their saved selection, All on cxstream boards)."""
    variables: dict[str, Variable] = variables_from_board(board)
    for name, value in (selections or {}).items():
        if name not in variables:
            raise PanelQueryError(
                f"board has no variable {name!r} (has {sorted(variables)})",
                board=str(board.get("uid")),
                panel="",
            )
        variables[name] = variables[name].select(value)
    out = []
    for panel in panels(board):
        if panel.get("type") == "row":
            continue
        interval = grafana_interval_ms(
            time_range,
            max_data_points=int(panel.get("maxDataPoints") or max_data_points),
            min_interval=panel.get("interval"),
        )
        context = QueryContext(time_range, interval, variables)
        for target in panel.get("targets") or []:
            raw = str(target.get("rawSql", ""))
            out.append(
                PanelQuery(
                    board=str(board.get("uid")),
                    panel_id=int(panel.get("id", 0)),
                    title=str(panel.get("title", "")),
                    panel_type=str(panel.get("type")),
                    ref_id=str(target.get("refId")),
                    raw_sql=raw,
                    sql=expand(raw, context),
                    interval_ms=interval,
                )
            )
    return out


def run_sql(backend: ClickHouseBackend, sql: str) -> QueryResult:
    """Run ``sql`` with ``backend.database`` as the current database (as the datasource's default
    database would be); names and ClickHouse types of the columns come back with the rows."""
    database = check_identifier(backend.database, "clickhouse.database")
    started = time.perf_counter()
    if isinstance(backend, ServerBackend):
        client = backend.client
        previous = client.execute("SELECT currentDatabase()")[0][0]
        client.execute(f"USE {database}")
        try:
            rows, columns = client.execute(sql, with_column_types=True)
        finally:
            client.execute(f"USE {previous}")
        result = QueryResult([(str(n), str(t)) for n, t in columns], [tuple(r) for r in rows])
    elif isinstance(backend, ChdbBackend):
        session = backend.session
        previous = str(session.query("SELECT currentDatabase()", "TSVRaw")).strip()
        session.query(f"USE {database}", "CSV")
        try:
            text = str(session.query(sql, "JSONCompact"))
        finally:
            session.query(f"USE {previous}", "CSV")
        data = json.loads(text) if text.strip() else {"meta": [], "data": []}
        result = QueryResult(
            [(m["name"], m["type"]) for m in data["meta"]], [tuple(r) for r in data["data"]]
        )
    else:
        raise PanelQueryError(
            f"cannot run panel SQL on a {type(backend).__name__}", board="", panel=""
        )
    result.elapsed_ms = (time.perf_counter() - started) * 1000
    return result


def run_query(backend: ClickHouseBackend, query: PanelQuery) -> QueryResult:
    try:
        return run_sql(backend, query.sql)
    except PanelQueryError:
        raise
    except Exception as exc:  # clickhouse-driver's ServerException, chdb's ChdbError, ...
        message = str(exc).split(". Stack trace:")[0].strip()
        raise PanelQueryError(
            f"{query.name}: ClickHouse {backend.kind} refused the panel's SQL: {message}\n"
            f"SQL: {query.sql}",
            board=query.board,
            panel=query.title,
        ) from exc


def _base(type_: str) -> str:
    for wrapper in ("LowCardinality(", "Nullable("):
        while type_.startswith(wrapper):
            type_ = type_[len(wrapper) : -1]
    return type_


def is_numeric(type_: str) -> bool:
    return _base(type_).startswith(_NUMERIC)


def is_time(type_: str) -> bool:
    return _base(type_).startswith(("DateTime", "Date"))


def is_text(type_: str) -> bool:
    base = _base(type_)
    return base.startswith(("String", "FixedString", "Enum"))


def shape_problems(panel_type: str, result: QueryResult) -> list[str]:
    """Why ``result`` cannot be drawn by a ``panel_type`` panel (empty when it can)."""
    types = [t for _, t in result.columns]
    numeric = [n for n, t in result.columns if is_numeric(t)]
    if not result.columns:
        return ["no columns"]
    if panel_type == "timeseries":
        problems = []
        if not any(is_time(t) for t in types):
            problems.append(f"a time series needs a DateTime column, got {result.columns}")
        if not numeric:
            problems.append(f"a time series needs a numeric column, got {result.columns}")
        return problems
    if panel_type == "stat":
        return [] if numeric else [f"a stat needs a numeric column, got {result.columns}"]
    if panel_type == "barchart":
        problems = []
        if not any(is_text(t) or is_time(t) for t in types):
            problems.append(f"a bar chart needs a label (string) column, got {result.columns}")
        if not numeric:
            problems.append(f"a bar chart needs a numeric column, got {result.columns}")
        return problems
    if panel_type == "table":
        return []
    return [f"unknown panel type {panel_type!r}"]


def check_board(
    backend: ClickHouseBackend,
    board: Mapping[str, Any],
    time_range: TimeRange,
    *,
    selections: Mapping[str, str | Sequence[str]] | None = None,
    require_rows: bool = False,
) -> list[PanelCheck]:
    """Run every panel of ``board``; a check has problems when the SQL fails, the columns do
    not fit the panel type, or (``require_rows``) nothing came back."""
    checks = []
    for query in panel_queries(board, time_range, selections=selections):
        check = PanelCheck(query)
        try:
            check.result = run_query(backend, query)
        except PanelQueryError as exc:
            check.problems.append(str(exc))
        else:
            check.problems += [
                f"{query.name}: {p}" for p in shape_problems(query.panel_type, check.result)
            ]
            if require_rows and not check.result.rows:
                check.problems.append(f"{query.name}: returned no rows")
        checks.append(check)
    return checks
