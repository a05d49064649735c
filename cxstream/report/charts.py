"""The report's charts as inline SVG, drawn with matplotlib's SVG backend.

matplotlib (not hand-written SVG) because axes, ticks, scales and text layout are what a
plotting library gets right and a template does not. Figures are built from
:class:`matplotlib.figure.Figure` directly (no pyplot: no global figure state), text stays text
(``svg.fonttype: none``, searchable and small) and the output is deterministic (no date in the
metadata, a fixed hash salt per chart). Element ids are prefixed per chart so several SVGs can
live in one HTML page without clashing.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cxstream.report.data import DepartmentSla, KpiTrend, SecurityFigures
from dashboards.kpis import Kpi
from dashboards.scorecard import KpiValue

GREEN = "#2e7d32"
RED = "#c62828"
GREY = "#9e9e9e"
TARGET = "#212121"
SEVERITY_COLOURS = {"low": "#90caf9", "medium": "#ffb74d", "high": "#e57373", "critical": "#8e0000"}
_RC: dict[str, Any] = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_ID = re.compile(r'\bid="([^"]+)"')


def _style(salt: str) -> AbstractContextManager[Any]:
    # the rc names are checked by matplotlib at run time; its stubs want literal keys
    rc: Any = _RC | {"svg.hashsalt": salt}
    return matplotlib.rc_context(rc)


def scaled(kpi: Kpi, value: float) -> float:
    """``value`` in the unit the report shows: percent, hours, or as it is."""
    if kpi.unit == "percentunit":
        return value * 100
    if kpi.unit == "s":
        return value / 3600
    return value


def axis_label(kpi: Kpi) -> str:
    return {"percentunit": "%", "s": "hours"}.get(kpi.unit, "")


def colour(meets: bool | None) -> str:
    return GREY if meets is None else GREEN if meets else RED


def kpi_bars(values: Sequence[KpiValue]) -> str:
    """One horizontal bar per KPI on its own scale, green at target and red below; the target
    is the black mark. (KPIs have different units: one shared axis would flatten them.)"""
    with _style("kpi-bars"):
        figure = Figure(figsize=(8.0, 0.55 * len(values) + 0.4))
        axes_list = figure.subplots(len(values), 1, squeeze=False)[:, 0]
        for axes, item in zip(axes_list, values, strict=True):
            kpi = item.kpi
            target = scaled(kpi, kpi.target)
            value = None if item.value is None else scaled(kpi, item.value)
            top = max(target, value or 0.0) * 1.15 or 1.0
            if kpi.unit == "percentunit":
                top = max(top, 100.0) if target >= 50 else top
            axes.barh([0], [value or 0.0], height=0.6, color=colour(item.meets_target))
            axes.plot([target, target], [-0.45, 0.45], color=TARGET, linewidth=2)
            axes.set_xlim(0, top)
            axes.set_ylim(-0.5, 0.5)
            axes.set_yticks([0], [kpi.title])
            axes.tick_params(axis="x", labelsize=7)
            label = "no data" if value is None else f"{item.text}  (target {kpi.target_text})"
            axes.text(1.02, 0.5, label, transform=axes.transAxes, va="center", fontsize=8)
        figure.subplots_adjust(left=0.38, right=0.74, top=0.98, bottom=0.04, hspace=0.9)
        return _svg(figure, "kpi-bars")


def trend_line(trend: KpiTrend) -> str:
    """The KPI per day with its target dashed (as the scorecard's trend panels draw it)."""
    kpi = trend.kpi
    positions = list(range(len(trend.points)))
    values = [float("nan") if v is None else scaled(kpi, v) for _, v in trend.points]
    target = scaled(kpi, kpi.target)
    with _style(f"trend-{kpi.key}"):
        figure = Figure(figsize=(4.2, 2.2))
        axes = figure.subplots()
        axes.plot(positions, values, color="#1565c0", linewidth=1.2)
        axes.axhline(target, color=TARGET, linestyle="--", linewidth=1)
        for position, value, (_, raw) in zip(positions, values, trend.points, strict=True):
            if raw is not None:
                meets = KpiValue(kpi, raw).meets_target
                axes.plot([position], [value], marker="o", markersize=4, color=colour(meets))
        # at most ~8 day labels, whatever the period's length
        step = max(1, len(positions) // 8)
        axes.set_xticks(
            positions[::step], [f"{day:%m-%d}" for day, _ in trend.points][::step], fontsize=7
        )
        axes.set_xlim(-0.5, max(len(positions) - 0.5, 0.5))
        axes.set_title(kpi.title, fontsize=9)
        axes.set_ylabel(axis_label(kpi))
        axes.set_ylim(bottom=0, top=max([target, *(v for v in values if v == v)]) * 1.15 or 1)
        figure.subplots_adjust(left=0.14, right=0.97, top=0.88, bottom=0.14)
        return _svg(figure, f"trend-{kpi.key}")


def department_bars(rows: Sequence[DepartmentSla], target: float) -> str:
    """Feedback answered within 24 h per department (green at target, red below)."""
    shown = [r for r in rows if r.department != "all"]
    with _style("sla-departments"):
        figure = Figure(figsize=(5.0, 0.5 * len(shown) + 0.9))
        axes = figure.subplots()
        names = [r.department.replace("_", " ") for r in shown]
        shares = [0.0 if r.answered_24h is None else r.answered_24h * 100 for r in shown]
        axes.barh(names, shares, color=[colour(r.meets_target) for r in shown])
        axes.axvline(target * 100, color=TARGET, linestyle="--", linewidth=1)
        axes.set_xlim(0, 105)
        axes.set_xlabel("answered within 24 h, %")
        axes.invert_yaxis()
        figure.subplots_adjust(left=0.28, right=0.97, top=0.95, bottom=0.3)
        return _svg(figure, "sla-departments")


def flags_by_rule(figures: SecurityFigures) -> str:
    """Security flags per rule, stacked by severity."""
    rules = list(figures.by_rule_severity)
    with _style("flags-by-rule"):
        figure = Figure(figsize=(5.5, 0.45 * max(len(rules), 1) + 1.0))
        axes = figure.subplots()
        left = [0] * len(rules)
        for severity in figures.severities:
            counts = [figures.by_rule_severity[r].get(severity, 0) for r in rules]
            if any(counts):
                axes.barh(
                    rules,
                    counts,
                    left=left,
                    color=SEVERITY_COLOURS.get(severity, GREY),
                    label=severity,
                )
                left = [a + b for a, b in zip(left, counts, strict=True)]
        axes.set_xlabel("flags")
        axes.invert_yaxis()
        if rules:
            axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        figure.subplots_adjust(left=0.3, right=0.8, top=0.95, bottom=0.25)
        return _svg(figure, "flags-by-rule")


def _svg(figure: Figure, prefix: str) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]  # drop the XML declaration and DOCTYPE: inline in HTML
    ids = set(_ID.findall(text))
    text = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', text)
    return re.sub(
        r"(url\(#|xlink:href=\"#|href=\"#)([^)\"]+)",
        lambda m: m.group(1) + (f"{prefix}-{m.group(2)}" if m.group(2) in ids else m.group(2)),
        text,
    )
