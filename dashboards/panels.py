"""Small builders for the panels and variables the boards are made of (grafana-foundation-sdk).

Every panel has exactly one ClickHouse target (:class:`~dashboards.clickhouse.ClickHouseQuery`).
Sizes are given as ``(width, height)`` in grid units; the SDK's dashboard builder places panels
left to right and starts a new line when a line's widths reach 24, so every line of a board
adds up to exactly 24 (:func:`dashboards.export.validate` checks it).
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import barchart, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.models import common, dashboard

from dashboards.clickhouse import ClickHouseQueryBuilder
from dashboards.kpis import Kpi
from dashboards.macros import ALL
from schemas import load_catalog

Size = tuple[int, int]
STAT: Size = (4, 5)
HALF: Size = (12, 8)
THIRD: Size = (8, 8)
FULL: Size = (24, 9)

_GREEN, _RED, _NEUTRAL = "green", "red", "blue"


def thresholds(steps: Sequence[tuple[float | None, str]]) -> dashboard_builders.ThresholdsConfig:
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(dashboard.ThresholdsMode.ABSOLUTE)
        .steps([dashboard.Threshold(value=value, color=color) for value, color in steps])
    )


def kpi_thresholds(kpi: Kpi) -> dashboard_builders.ThresholdsConfig:
    """Green at the target, red on the wrong side of it."""
    if kpi.better == "higher":
        return thresholds([(None, _RED), (kpi.target, _GREEN)])
    # lower is better: the target itself is still green; counts and seconds are integers
    return thresholds([(None, _GREEN), (kpi.target + 1, _RED)])


def _target(sql: str, *, time_series: bool) -> ClickHouseQueryBuilder:
    query = ClickHouseQueryBuilder(sql)
    return query.time_series() if time_series else query.table()


def stat_panel(
    title: str,
    sql: str,
    description: str,
    *,
    unit: str = "short",
    size: Size = STAT,
    steps: dashboard_builders.ThresholdsConfig | None = None,
    decimals: int | None = None,
) -> stat.Panel:
    """One number from a one-row query; coloured by ``steps`` (neutral without)."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .with_target(_target(sql, time_series=False))
        .unit(unit)
        .span(size[0])
        .height(size[1])
        .thresholds(steps or thresholds([(None, _NEUTRAL)]))
        .color_mode(
            common.BigValueColorMode.BACKGROUND if steps else common.BigValueColorMode.VALUE
        )
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .no_value("No data")
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def kpi_stat(kpi: Kpi, sql: str, *, size: Size = STAT) -> stat.Panel:
    return stat_panel(
        kpi.title,
        sql,
        kpi.description,
        unit=kpi.unit,
        size=size,
        steps=kpi_thresholds(kpi),
        decimals=1 if kpi.unit in {"none", "s"} else None,
    )


def timeseries_panel(
    title: str,
    sql: str,
    description: str,
    *,
    unit: str = "short",
    size: Size = HALF,
    min_interval: str = "1h",
    kpi: Kpi | None = None,
    bars: bool = False,
    stacked: bool = False,
) -> timeseries.Panel:
    """A trend; with ``kpi`` its target is drawn as a dashed line.

    ``min_interval`` is the grain of the rollup the query reads: a finer ``$__interval`` would
    only repeat the same buckets.
    """
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .with_target(_target(sql, time_series=True))
        .unit(unit)
        .span(size[0])
        .height(size[1])
        .interval(min_interval)
        .line_width(2)
        .fill_opacity(10)
        .span_nulls(True)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )
    if kpi is not None:
        panel = panel.thresholds(kpi_thresholds(kpi)).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.DASHED)
        )
    if bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(60)
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    return panel


def table_panel(title: str, sql: str, description: str, *, size: Size = HALF) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .with_target(_target(sql, time_series=False))
        .span(size[0])
        .height(size[1])
        .show_header(True)
        .cell_height(common.TableCellHeight.SM)
    )


def barchart_panel(
    title: str, sql: str, description: str, *, size: Size = HALF, stacked: bool = False
) -> barchart.Panel:
    """Bars per row of a table query: the first string column labels them."""
    panel = (
        barchart.Panel()
        .title(title)
        .description(description)
        .with_target(_target(sql, time_series=False))
        .span(size[0])
        .height(size[1])
        .orientation(common.VizOrientation.HORIZONTAL)
        .show_value(common.VisibilityMode.AUTO)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI))
    )
    if stacked:
        panel = panel.stacking(common.StackingMode.NORMAL)
    return panel


def row(title: str) -> dashboard_builders.Row:
    return dashboard_builders.Row(title).collapsed(False)


def enum_variable(
    name: str, label: str, schema: str, field: str, description: str
) -> dashboard_builders.CustomVariable:
    """A multi-value variable over the symbols of an Avro enum (All selected).

    The options come from the event contract itself, so a symbol added to the schema shows up
    on the boards without editing them.
    """
    symbols = _enum_symbols(schema, field)
    return (
        dashboard_builders.CustomVariable(name)
        .id(name)
        .label(label)
        .description(description)
        .values(",".join(symbols))
        .multi(True)
        .include_all(True)
        .current(dashboard.VariableOption(selected=True, text=["All"], value=[ALL]))
        .options(
            [dashboard.VariableOption(selected=True, text="All", value=ALL)]
            + [dashboard.VariableOption(selected=False, text=s, value=s) for s in symbols]
        )
    )


def values_variable(
    name: str, label: str, values: Sequence[str], description: str
) -> dashboard_builders.CustomVariable:
    """A multi-value variable over fixed ``values`` (All selected)."""
    return (
        dashboard_builders.CustomVariable(name)
        .id(name)
        .label(label)
        .description(description)
        .values(",".join(values))
        .multi(True)
        .include_all(True)
        .current(dashboard.VariableOption(selected=True, text=["All"], value=[ALL]))
        .options(
            [dashboard.VariableOption(selected=True, text="All", value=ALL)]
            + [dashboard.VariableOption(selected=False, text=v, value=v) for v in values]
        )
    )


def _enum_symbols(schema: str, field: str) -> list[str]:
    definition = load_catalog().latest(schema).definition
    for entry in definition["fields"]:
        if entry["name"] != field:
            continue
        kinds = entry["type"] if isinstance(entry["type"], list) else [entry["type"]]
        for kind in kinds:
            if isinstance(kind, dict) and kind.get("type") == "enum":
                return list(kind["symbols"])
    raise ValueError(f"{schema}.{field} is not an enum field of the schema")
