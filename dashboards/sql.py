"""Small SQL fragments the panel queries are made of (ClickHouse 18.16 / 26.x common dialect).

Every fragment keeps the plugin's macros and template variables in place; they are expanded by
Grafana (or :mod:`dashboards.macros`) at query time. Rules the fragments follow:

- time buckets are ``intDiv`` over epoch seconds (18.16 has no ``toStartOfInterval``, which is
  what the plugin's ``$__timeInterval`` emits) and are UTC, like the rollups;
- a rollup's ``bucket`` is compared with the range start rounded down to its grain, so a range
  that starts inside an hour still counts that hour (ranges on whole hours/days are exact);
- ratios are NULL, not NaN or inf, when there is nothing to divide by (the stat says "No data");
- an output alias never repeats a column name the same query reads (18.16 resolves aliases
  everywhere in the query and would see ``sum(x) AS x`` as a nested aggregate).
"""

from __future__ import annotations

from collections.abc import Iterable


def bucket(column: str) -> str:
    """``column`` (a DateTime) rounded down to the panel interval, as a UTC DateTime."""
    return f"toDateTime(intDiv(toUInt32({column}), $__interval_s) * $__interval_s, 'UTC')"


def grain_range(column: str, grain: str) -> str:
    """Rollup rows of the time range: ``grain`` is ``Minute``, ``Hour`` or ``Day``."""
    return f"{column} >= toStartOf{grain}($__fromTime, 'UTC') AND {column} <= $__toTime"


def ratio(numerator: str, denominator: str) -> str:
    return f"if({denominator} > 0, {numerator} / {denominator}, NULL)"


def var_in(expression: str, variable: str) -> str:
    """``expression IN (<selected values>)``, or ``1=1`` when the variable is set to All."""
    return f"$__conditionalAll({expression} IN (${{{variable}}}), ${variable})"


def quoted(values: Iterable[str]) -> str:
    """``'a', 'b'`` for a fixed list of SQL string literals (values are plain identifiers)."""
    return ", ".join(f"'{value}'" for value in values)
