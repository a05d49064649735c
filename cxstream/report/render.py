"""One self-contained HTML page of a :class:`~cxstream.report.data.ReportData`.

Jinja2 with autoescaping on for everything: every value from ClickHouse (rule names, policy
names, department names) is escaped; only the SVG charts made by :mod:`cxstream.report.charts`
are inserted as markup. No external stylesheet, script, font or image: the page opens offline
and can be mailed as it is.
"""

from __future__ import annotations

from datetime import date, datetime

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from cxstream.report import charts
from cxstream.report.data import ReportData
from dashboards.kpis import BY_KEY, GOALS, Kpi
from dashboards.scorecard import KpiValue

TEMPLATE = "report.html.j2"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _hours(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 3600:.1f} h"


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _kpi_text(kpi: Kpi, value: float | None) -> str:
    return KpiValue(kpi, value).text


def _state(meets: bool | None) -> str:
    """CSS class of a value against its target."""
    return "nodata" if meets is None else "ok" if meets else "miss"


def _stamp(moment: datetime | date) -> str:
    if isinstance(moment, datetime):
        return f"{moment:%Y-%m-%d %H:%M:%S} UTC"
    return f"{moment:%Y-%m-%d}"


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("cxstream.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,  # a misspelt name fails the render instead of printing ""
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(percent=_percent, hours=_hours, num=_count, state=_state, stamp=_stamp)
    env.globals.update(
        kpi_text=_kpi_text, kpi_state=lambda k, v: _state(KpiValue(k, v).meets_target)
    )
    return env


def render(data: ReportData) -> str:
    """The report page as HTML text."""
    answered = BY_KEY["feedback_answered_24h"]
    svg = {
        "kpis": Markup(charts.kpi_bars(data.kpis)),
        "trends": [Markup(charts.trend_line(t)) for t in data.trends],
        "sla": Markup(charts.department_bars(data.sla, answered.target)),
        "flags": Markup(charts.flags_by_rule(data.security)),
    }
    template = environment().get_template(TEMPLATE)
    return template.render(
        data=data,
        goals=GOALS,
        svg=svg,
        answered_target=answered.target_text,
        met=sum(v.meets_target is True for v in data.kpis),
        judged=sum(v.meets_target is not None for v in data.kpis),
    )
