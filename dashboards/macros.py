"""Turn a panel's raw SQL into the SQL ClickHouse receives, as Grafana and the plugin would.

Three passes, in the order the ``grafana-clickhouse-datasource`` plugin (v4) applies them:

1. ``$__conditionalAll(<phrase>, $var)`` (plugin frontend, ``applyConditionalAll``): ``1=1``
   when ``var`` is set to *All* (or empty), else ``<phrase>``.
2. Template variables (Grafana's ``templateSrv.replace`` with the plugin's formatter): ``$var``,
   ``${var}``, ``[[var]]``; a multi-value selection becomes ``'a','b'`` (values joined, quoted),
   a single value is inserted as it is. *All* without a custom all-value means every option.
   Grafana's own ``$__from`` / ``$__to`` (epoch ms), ``$__interval_ms``, ``$__range_s`` and
   ``$__range_ms`` are replaced here too.
3. Backend macros (``pkg/macros/macros.go``, macropro):

   =============================  ==========================================================
   ``$__timeFilter(c)``           ``c >= toDateTime(<from s>) AND c <= toDateTime(<to s>)``
   ``$__timeFilter_ms(c)``        same with ``fromUnixTimestamp64Milli(<ms>)``
   ``$__dateFilter(c)``           ``c >= toDate('YYYY-MM-DD') AND c <= toDate('YYYY-MM-DD')``
   ``$__fromTime`` / ``$__toTime``  ``toDateTime(<s>)``
   ``$__fromTime_ms`` / ``_ms``   ``fromUnixTimestamp64Milli(<ms>)``
   ``$__timeFrom(c)`` / ``To(c)``  ``c >= toDateTime(<from s>)`` / ``c <= toDateTime(<to s>)``
   ``$__interval_s``              the panel interval in whole seconds (at least 1)
   ``$__timeInterval(c)``         ``toStartOfInterval(toDateTime(c), INTERVAL <n> second)``
   =============================  ==========================================================

   ``$__timeInterval`` (and ``$__timeGroup``) expand to ``toStartOfInterval``, which ClickHouse
   18.16 lacks: cxstream panels bucket with ``intDiv(toUInt32(c), $__interval_s)`` instead. The
   expansion is kept so that a panel using it fails on 18.16 exactly as it would in Grafana.

The plugin leaves a macro it does not know in the SQL (ClickHouse then fails on it); here an
unknown macro or variable raises :class:`~dashboards.errors.MacroError`, which is the same
failure found earlier. :func:`grafana_interval_ms` computes the interval Grafana would give a
panel (``rangeutil.calculateInterval``: range / max data points, rounded, at least the panel's
minimum interval).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dashboards.errors import MacroError

ALL = "$__all"
#: Grafana's default when a panel sets no max data points (about a panel's width in pixels)
DEFAULT_MAX_DATA_POINTS = 1000

# templateSrv's variable syntax: $var, [[var]] / [[var:fmt]], ${var} / ${var.field} / ${var:fmt}
_TEMPLATE_VAR = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}"
)
_BACKEND_MACRO = re.compile(r"\$__(\w+)")
_CONDITIONAL_ALL = "$__conditionalAll("
_VAR_IN_ARG = re.compile(r"(?<=\$\{)\w+(?=\})|(?<=\$)\w+")
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w|y)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_UNIT_MS |= {"w": 7 * 86_400_000, "y": 365 * 86_400_000}
# rangeutil.roundInterval: (upper bound exclusive, rounded interval), in ms
_ROUND_STEPS: tuple[tuple[int, int], ...] = (
    (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1_500, 1_000),
    (3_500, 2_000), (7_500, 5_000), (12_500, 10_000), (17_500, 15_000), (25_000, 20_000),
    (45_000, 30_000), (90_000, 60_000), (210_000, 120_000), (450_000, 300_000),
    (750_000, 600_000), (1_050_000, 900_000), (1_500_000, 1_200_000), (2_700_000, 1_800_000),
    (5_400_000, 3_600_000), (9_000_000, 7_200_000), (16_200_000, 10_800_000),
    (32_400_000, 21_600_000), (86_400_000, 43_200_000), (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000), (3_628_800_000, 2_592_000_000),
)  # fmt: skip
_ROUND_DEFAULT = 31_536_000_000


@dataclass(frozen=True)
class TimeRange:
    """A dashboard time range, epoch milliseconds (``to`` inclusive, as the plugin filters)."""

    from_ms: int
    to_ms: int

    def __post_init__(self) -> None:
        if self.to_ms < self.from_ms:
            raise MacroError(f"time range {self.from_ms}..{self.to_ms}: 'to' is before 'from'")

    @property
    def from_s(self) -> int:
        return self.from_ms // 1000

    @property
    def to_s(self) -> int:
        return self.to_ms // 1000


@dataclass(frozen=True)
class Variable:
    """A template variable as a panel query sees it: its options and what is selected."""

    name: str
    options: tuple[str, ...] = ()
    #: selected values; ``(ALL,)`` selects *All*
    current: tuple[str, ...] = ()
    multi: bool = False
    include_all: bool = False
    #: Grafana's "custom all value" (``None``: All means every option)
    all_value: str | None = None

    @property
    def is_all(self) -> bool:
        return self.current == (ALL,)

    def value(self) -> str | list[str]:
        """What templateSrv hands the formatter: a list for multi-value variables."""
        if self.current == (ALL,):
            if self.all_value is not None:
                return self.all_value
            return list(self.options)
        if self.multi:
            return list(self.current)
        return self.current[0] if self.current else ""

    def select(self, values: str | Sequence[str]) -> Variable:
        """This variable with ``values`` selected (``ALL`` for All); unknown values refused."""
        chosen = (values,) if isinstance(values, str) else tuple(values)
        if chosen != (ALL,) and self.options:
            unknown = [v for v in chosen if v not in self.options]
            if unknown:
                raise MacroError(
                    f"variable {self.name}: {unknown} not among its options {list(self.options)}"
                )
        if chosen == (ALL,) and not self.include_all:
            raise MacroError(f"variable {self.name} has no 'All' option")
        if len(chosen) > 1 and not self.multi:
            raise MacroError(f"variable {self.name} takes one value, got {list(chosen)}")
        return Variable(
            self.name, self.options, chosen, self.multi, self.include_all, self.all_value
        )


@dataclass(frozen=True)
class QueryContext:
    """Everything the three passes need besides the SQL."""

    time_range: TimeRange
    interval_ms: int
    variables: Mapping[str, Variable] = field(default_factory=dict)


def parse_duration_ms(text: str) -> int:
    """Grafana interval text (``"1m"``, ``"30s"``, ``"1h"``, ``"500ms"``) -> milliseconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise MacroError(f"interval {text!r}: expected a number and one of ms, s, m, h, d, w, y")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def round_interval_ms(interval_ms: float) -> int:
    """Grafana's ``rangeutil.roundInterval``."""
    for bound, rounded in _ROUND_STEPS:
        if interval_ms < bound:
            return rounded
    return _ROUND_DEFAULT


def grafana_interval_ms(
    time_range: TimeRange,
    *,
    max_data_points: int = DEFAULT_MAX_DATA_POINTS,
    min_interval: str | None = None,
) -> int:
    """The ``$__interval`` Grafana computes for a panel over ``time_range``."""
    span = time_range.to_ms - time_range.from_ms
    interval = round_interval_ms(span / max(max_data_points, 1))
    low = parse_duration_ms(min_interval) if min_interval else 1
    return max(interval, low)


def variables_from_board(board: Mapping[str, Any]) -> dict[str, Variable]:
    """The template variables of an exported board, with their saved selections."""
    variables: dict[str, Variable] = {}
    for raw in (board.get("templating") or {}).get("list") or []:
        name, kind = str(raw["name"]), raw.get("type")
        query = raw.get("query", "")
        current = raw.get("current") or {}
        selected = current.get("value", "")
        chosen = tuple(selected) if isinstance(selected, list) else (str(selected),)
        if kind == "constant":
            variables[name] = Variable(name, (str(query),), (str(query),))
        elif kind == "custom":
            options = tuple(_custom_option(part) for part in str(query).split(",") if part)
            variables[name] = Variable(
                name,
                options,
                chosen,
                multi=bool(raw.get("multi")),
                include_all=bool(raw.get("includeAll")),
                all_value=raw.get("allValue") or None,
            )
        else:
            raise MacroError(f"variable {name}: type {kind!r} is not supported by this expander")
    return variables


def _custom_option(part: str) -> str:
    # custom variable syntax: "text : value" or just "value"
    text = part.strip()
    return text.split(" : ", 1)[1].strip() if " : " in text else text


def expand(sql: str, context: QueryContext) -> str:
    """``sql`` as ClickHouse receives it from Grafana (see the module docstring)."""
    sql = _conditional_all(sql, context.variables)
    sql = _template_variables(sql, context)
    return _backend_macros(sql, context)


# -- pass 1: $__conditionalAll ------------------------------------------------------------------


def _macro_args(text: str, open_index: int) -> tuple[list[str], int] | None:
    """Arguments of the call whose ``(`` is at ``open_index`` (top-level commas), and its end."""
    depth, start, args = 0, open_index + 1, []
    for index in range(open_index, len(text)):
        char = text[index]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                args.append(text[start:index])
                return args, index + 1
        elif char == "," and depth == 1:
            args.append(text[start:index])
            start = index + 1
    return None


def _conditional_all(sql: str, variables: Mapping[str, Variable]) -> str:
    # the plugin works from the last occurrence backwards, so nested uses expand inside out
    index = sql.rfind(_CONDITIONAL_ALL)
    while index != -1:
        parsed = _macro_args(sql, index + len(_CONDITIONAL_ALL) - 1)
        if parsed is None or len(parsed[0]) != 2:
            raise MacroError(f"$__conditionalAll needs (phrase, $variable): {sql[index:][:80]!r}")
        (phrase, var_arg), end = parsed
        match = _VAR_IN_ARG.search(var_arg.strip())
        if match is None:
            raise MacroError(f"$__conditionalAll: {var_arg.strip()!r} names no variable")
        variable = variables.get(match.group(0))
        if variable is None:
            raise MacroError(f"$__conditionalAll: unknown variable {match.group(0)!r}")
        if variable.is_all or variable.current in ((), ("",)):
            phrase = "1=1"
        sql = sql[:index] + phrase + sql[end:]
        index = sql.rfind(_CONDITIONAL_ALL)
    return sql


# -- pass 2: template variables -----------------------------------------------------------------


def _plugin_format(value: str | list[str]) -> str:
    # CHDatasource.format: arrays become 'a','b'; single values are inserted raw
    if isinstance(value, list):
        return "'" + "','".join(value) + "'"
    return value


def _single_quote(value: str | list[str]) -> str:
    values = value if isinstance(value, list) else [value]
    return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)


_FORMATS: dict[str, Callable[[str | list[str]], str]] = {
    "singlequote": _single_quote,
    "raw": lambda v: ",".join(v) if isinstance(v, list) else v,
    "csv": lambda v: ",".join(v) if isinstance(v, list) else v,
}


def _builtin(name: str, context: QueryContext) -> str | None:
    tr = context.time_range
    values = {
        "__from": str(tr.from_ms),
        "__to": str(tr.to_ms),
        "__interval_ms": str(context.interval_ms),
        "__range_ms": str(tr.to_ms - tr.from_ms),
        "__range_s": str((tr.to_ms - tr.from_ms) // 1000),
    }
    return values.get(name)


def _template_variables(sql: str, context: QueryContext) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(6)
        builtin = _builtin(name, context)
        if builtin is not None:
            return builtin
        variable = context.variables.get(name)
        if variable is None:
            if name.startswith("__"):
                return match.group(0)  # a backend macro: pass 3 expands it
            raise MacroError(f"unknown template variable ${name} in {sql[:80]!r}...")
        if fmt is None:
            return _plugin_format(variable.value())
        formatter = _FORMATS.get(fmt)
        if formatter is None:
            raise MacroError(f"variable format {fmt!r} (in ${{{name}:{fmt}}}) is not supported")
        return formatter(variable.value())

    return _TEMPLATE_VAR.sub(replace, sql)


# -- pass 3: backend macros ---------------------------------------------------------------------


def _date_time(seconds: int) -> str:
    return f"toDateTime({seconds})"


def _date_time_ms(ms: int) -> str:
    return f"fromUnixTimestamp64Milli({ms})"


def _date(seconds: int) -> str:
    return f"toDate('{datetime.fromtimestamp(seconds, UTC):%Y-%m-%d}')"


def _interval_s(context: QueryContext) -> int:
    return max(context.interval_ms // 1000, 1)


_Macro = Callable[[QueryContext, list[str]], str]


def _one(name: str, build: Callable[[QueryContext, str], str]) -> _Macro:
    def macro(context: QueryContext, args: list[str]) -> str:
        if len(args) != 1:
            raise MacroError(f"$__{name} expects 1 argument, received {len(args)}")
        return build(context, args[0])

    return macro


def _none(name: str, build: Callable[[QueryContext], str]) -> _Macro:
    def macro(context: QueryContext, args: list[str]) -> str:
        return build(context)

    return macro


_MACROS: dict[str, _Macro] = {
    "timeFilter": _one(
        "timeFilter",
        lambda c, col: (
            f"{col} >= {_date_time(c.time_range.from_s)} AND "
            f"{col} <= {_date_time(c.time_range.to_s)}"
        ),
    ),
    "timeFilter_ms": _one(
        "timeFilter_ms",
        lambda c, col: (
            f"{col} >= {_date_time_ms(c.time_range.from_ms)} AND "
            f"{col} <= {_date_time_ms(c.time_range.to_ms)}"
        ),
    ),
    "dateFilter": _one(
        "dateFilter",
        lambda c, col: (
            f"{col} >= {_date(c.time_range.from_s)} AND {col} <= {_date(c.time_range.to_s)}"
        ),
    ),
    "timeFrom": _one("timeFrom", lambda c, col: f"{col} >= {_date_time(c.time_range.from_s)}"),
    "timeTo": _one("timeTo", lambda c, col: f"{col} <= {_date_time(c.time_range.to_s)}"),
    "fromTime": _none("fromTime", lambda c: _date_time(c.time_range.from_s)),
    "toTime": _none("toTime", lambda c: _date_time(c.time_range.to_s)),
    "fromTime_ms": _none("fromTime_ms", lambda c: _date_time_ms(c.time_range.from_ms)),
    "toTime_ms": _none("toTime_ms", lambda c: _date_time_ms(c.time_range.to_ms)),
    "interval_s": _none("interval_s", lambda c: str(_interval_s(c))),
    "timeInterval": _one(
        "timeInterval",
        lambda c, col: f"toStartOfInterval(toDateTime({col}), INTERVAL {_interval_s(c)} second)",
    ),
}


def _backend_macros(sql: str, context: QueryContext) -> str:
    out: list[str] = []
    pos = 0
    for match in _BACKEND_MACRO.finditer(sql):
        if match.start() < pos:
            continue  # inside the arguments of a macro already expanded
        name = match.group(1)
        macro = _MACROS.get(name)
        if macro is None:
            raise MacroError(f"$__{name} is not a macro of the ClickHouse plugin this expands")
        end = match.end()
        args: list[str] = []
        if end < len(sql) and sql[end] == "(":
            parsed = _macro_args(sql, end)
            if parsed is None:
                raise MacroError(
                    f"$__{name}: unbalanced parentheses in {sql[match.start() :][:80]!r}"
                )
            raw_args, end = parsed
            args = [a.strip() for a in raw_args if a.strip()]
        out.append(sql[pos : match.start()])
        out.append(macro(context, args))
        pos = end
    out.append(sql[pos:])
    return "".join(out)
