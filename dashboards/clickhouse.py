"""A raw-SQL query of the ``grafana-clickhouse-datasource`` plugin as a foundation-SDK target.

The SDK ships no ClickHouse query builder (BRIEF §4), so this is the small generic one: a
:class:`~grafana_foundation_sdk.cog.variants.Dataquery` whose JSON is the plugin's v4 SQL-editor
query model, and a :class:`~grafana_foundation_sdk.cog.builder.Builder` panels take as a target.
:func:`register` teaches the SDK's JSON decoder the variant, so an exported board read back with
``Dashboard.from_json`` yields :class:`ClickHouseQuery` targets again (the round trip
:mod:`dashboards.export` uses to validate the model).
"""

from __future__ import annotations

from typing import Any, Literal, Self

from grafana_foundation_sdk.cog import builder, runtime, variants

from dashboards.datasource import DATASOURCE_TYPE, DATASOURCE_UID, PLUGIN_QUERY_VERSION

Format = Literal["table", "time_series"]
#: sqlds' FormatQueryOption numbers, which is what the plugin stores in ``format``
_FORMAT_CODES: dict[str, int] = {"time_series": 0, "table": 1}
#: the plugin's QueryType for each format (used by Explore and the query editor)
_QUERY_TYPES: dict[str, str] = {"time_series": "timeseries", "table": "table"}


class ClickHouseQuery(variants.Dataquery):
    """One panel target: raw SQL with plugin macros and template variables left in."""

    def __init__(
        self,
        ref_id: str = "A",
        raw_sql: str = "",
        format_: Format = "table",
        datasource_uid: str = DATASOURCE_UID,
    ) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.format = format_
        self.datasource_uid = datasource_uid

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": {"type": DATASOURCE_TYPE, "uid": self.datasource_uid},
            "editorType": "sql",
            "pluginVersion": PLUGIN_QUERY_VERSION,
            "rawSql": self.raw_sql,
            "format": _FORMAT_CODES[self.format],
            "queryType": _QUERY_TYPES[self.format],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        codes = {code: name for name, code in _FORMAT_CODES.items()}
        fmt = codes.get(data.get("format", 1))
        if fmt is None:
            raise ValueError(f"ClickHouse target {data.get('refId')!r}: unknown format {data!r}")
        return cls(
            ref_id=str(data.get("refId", "")),
            raw_sql=str(data.get("rawSql", "")),
            format_=fmt,  # type: ignore[arg-type]  # checked against _FORMAT_CODES above
            datasource_uid=str((data.get("datasource") or {}).get("uid", "")),
        )


class ClickHouseQueryBuilder(builder.Builder[ClickHouseQuery]):
    """``ClickHouseQueryBuilder(sql).time_series()`` -> a target for any panel builder."""

    def __init__(self, sql: str, ref_id: str = "A") -> None:
        self._internal = ClickHouseQuery(ref_id=ref_id, raw_sql=sql)

    def build(self) -> ClickHouseQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def table(self) -> Self:
        self._internal.format = "table"
        return self

    def time_series(self) -> Self:
        self._internal.format = "time_series"
        return self


def register() -> None:
    """Make the SDK decode targets of the ClickHouse datasource as :class:`ClickHouseQuery`."""
    runtime.Runtime().register_dataquery_variant(
        runtime.DataqueryConfig(
            identifier=DATASOURCE_TYPE, from_json_hook=ClickHouseQuery.from_json
        )
    )
