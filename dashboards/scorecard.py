"""The scorecard's KPI values for a time range, computed by the board's own panel SQL.

The demo's live view and ``cxstream report`` show the same numbers Grafana shows: each KPI stat
panel of the exported CX scorecard (``dashboards/json/cx-scorecard.json``) is expanded with the
plugin's macros for the time range and run on the backend, exactly as the board would.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from dashboards.datasource import JSON_DIR
from dashboards.kpis import BY_KEY, KPIS, Kpi
from dashboards.macros import TimeRange
from dashboards.runner import panel_queries, run_query
from sinks.clickhouse.backend import ClickHouseBackend

SCORECARD_FILE = JSON_DIR / "cx-scorecard.json"
_BY_TITLE: dict[str, Kpi] = {kpi.title: kpi for kpi in KPIS}


@dataclass(frozen=True)
class KpiValue:
    kpi: Kpi
    #: ``None`` when the time range has no data for it (the stat shows "No data")
    value: float | None

    @property
    def meets_target(self) -> bool | None:
        if self.value is None:
            return None
        if self.kpi.better == "higher":
            return self.value >= self.kpi.target
        return self.value <= self.kpi.target

    @property
    def text(self) -> str:
        if self.value is None:
            return "no data"
        unit = self.kpi.unit
        if unit == "percentunit":
            return f"{self.value * 100:.1f} %"
        if unit == "s":
            return f"{self.value / 3600:.1f} h"
        return f"{self.value:.4g}"


def load_scorecard() -> dict[str, Any]:
    board: dict[str, Any] = json.loads(SCORECARD_FILE.read_text(encoding="utf-8"))
    return board


def scorecard_values(backend: ClickHouseBackend, time_range: TimeRange) -> list[KpiValue]:
    """Every KPI of :data:`dashboards.kpis.KPIS`, in their order, for ``time_range``."""
    values: dict[str, float | None] = {}
    for query in panel_queries(load_scorecard(), time_range):
        kpi = _BY_TITLE.get(query.title)
        if query.panel_type != "stat" or kpi is None:
            continue
        values[kpi.key] = _first_number(run_query(backend, query).rows)
    return [KpiValue(BY_KEY[kpi.key], values.get(kpi.key)) for kpi in KPIS]


def _first_number(rows: list[tuple[Any, ...]]) -> float | None:
    for row in rows:
        for cell in row:
            if isinstance(cell, bool) or cell is None:
                continue
            try:
                number = float(cell)
            except (TypeError, ValueError):
                continue
            return None if math.isnan(number) else number
    return None
