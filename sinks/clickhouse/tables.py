"""The raw ClickHouse tables, derived from the Avro schemas: one table per event type.

Columns are *generated* from the schemas (so rows, DDL and schema evolution cannot drift apart:
a field added in a new schema version becomes an ``ALTER TABLE ... ADD COLUMN`` at migrate time,
see :func:`sinks.clickhouse.migrations.sync_columns`); the physical layout (sorting key,
partitioning, which strings are low-cardinality) is *chosen by hand* in :data:`LAYOUTS`, because
it follows the board queries, not the schema.

Mapping (ClickHouse 18.16 has no DateTime64, Map or Bool, so only the common dialect is used):

=========================  =================================================================
Avro                        ClickHouse
=========================  =================================================================
string / int / long        ``String`` / ``Int32`` / ``Int64`` (``Nullable(...)`` for unions
double / float / boolean   with null); ``Float64`` / ``Float32`` / ``UInt8``
enum                       ``LowCardinality(String)``
timestamp-millis           ``DateTime('UTC')`` (seconds); ``occurred_at`` also keeps
                           ``occurred_at_ms UInt64`` (event order, exact delays)
map<string, V>             ``<f>_keys Array(String)`` + ``<f>_values Array(V)``
array<T>                   ``Array(T)``
array<record>              one ``Array`` per record field: ``<f>_<sub>`` (use ARRAY JOIN)
``"pii": <class>``         same type, holding the pseudonym (cxstream.privacy) unless
                           ``privacy.store_pii_in_clear``
``"pii": "free_text"``     ``Nullable(String)``, NULL unless ``privacy.store_pii_in_clear``,
                           plus ``<f>_length UInt32`` (characters, 0 when absent)
=========================  =================================================================

Every raw table also has ``ingest_time DateTime('UTC')``, ``schema_id UInt32`` and the Kafka
coordinates ``kafka_topic``, ``kafka_partition``, ``kafka_offset`` (the sink's deduplication
identity, see :mod:`sinks.clickhouse.sink`).

Engine: ``ReplacingMergeTree`` with ``event_id`` last in the sorting key, so the same event
written twice (a producer resending it, a replay) collapses into one row; merges are eventual,
so queries on raw tables use ``FINAL`` (or ``argMax``/``uniqExact(event_id)``). Partitions are
days of ``occurred_at`` (``toYYYYMMDD``) so retention drops whole days; customer master data
(``keep`` tables) is partitioned by month and never dropped by retention.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from cxstream.errors import SchemaError
from schemas import SchemaCatalog, SchemaVersion, load_catalog

#: channels the CX plan counts as online (the schema's Channel doc says the same)
ONLINE_CHANNELS: tuple[str, ...] = ("web", "app", "social", "chat")

Retention = Literal["raw", "keep"]
#: how rows.py fills a column
Kind = Literal[
    "value", "bool", "ts", "ts_ms", "pii", "free_text", "text_length",
    "map_keys", "map_values", "array", "record_array", "meta",
]  # fmt: skip


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    kind: Kind
    #: the Avro field the column comes from ("" for metadata columns)
    source: str = ""
    #: pii class for ``pii`` columns, record field for ``record_array`` columns
    detail: str = ""
    #: Avro default of the field, for columns added to existing tables
    default: Any = None


@dataclass(frozen=True)
class Layout:
    #: sorting key before ``event_id`` (non-nullable columns, coarse to fine)
    order_by: tuple[str, ...]
    #: string fields stored as ``LowCardinality`` besides the enums
    low_cardinality: frozenset[str] = field(default_factory=frozenset)
    retention: Retention = "raw"

    @property
    def partition_by(self) -> str:
        return "toYYYYMM(occurred_at)" if self.retention == "keep" else "toYYYYMMDD(occurred_at)"


def _lc(*names: str) -> frozenset[str]:
    return frozenset(names)


# non-enum strings stored as LowCardinality: dimensions the boards group by. Not every
# repetitive string: the native driver pays a dictionary lookup per LowCardinality value, which
# is most of its insert cost on the busy tables
_COMMON_LC = _lc("category", "segment", "city")

#: table layout per event type: the keys follow the board queries (filter dims, then time)
LAYOUTS: dict[str, Layout] = {
    "channel_interaction": Layout(("channel", "action", "occurred_at"), _lc("locale")),
    "chat_session": Layout(("bot_only", "occurred_at")),
    "customer_registered": Layout(("customer_id",), retention="keep"),
    "feedback_submitted": Layout(("department", "channel", "occurred_at")),
    "feedback_status_changed": Layout(("status", "occurred_at")),
    "survey_response": Layout(("dimension", "channel", "occurred_at")),
    "transaction": Layout(("channel", "category", "occurred_at")),
    "product_holding_changed": Layout(("product_type", "change", "occurred_at")),
    "access_event": Layout(
        ("principal_type", "action", "occurred_at"),
        _lc("staff_team", "geo_country", "geo_city", "auth_method"),
    ),
    "recommendation_feedback": Layout(("action", "channel", "occurred_at")),
    "consent_changed": Layout(("customer_id", "occurred_at"), retention="keep"),
    "erasure_requested": Layout(("customer_id", "occurred_at"), retention="keep"),
    "profile_snapshot": Layout(("customer_id", "version"), _lc("preferred_channel")),
    "alert": Layout(("kind", "level", "occurred_at")),
    "security_flag": Layout(("rule", "severity", "occurred_at"), _lc("rule")),
    "recommendation": Layout(("policy", "occurred_at"), _lc("policy", "model_version")),
    "kpi_measurement": Layout(("kpi", "window", "window_start"), _lc("kpi")),
}

META_COLUMNS: tuple[Column, ...] = (
    Column("ingest_time", "DateTime('UTC')", "meta"),
    Column("schema_id", "UInt32", "meta"),
    # plain String: LowCardinality costs the native driver a dictionary lookup per row, and one
    # topic per table compresses to nothing either way
    Column("kafka_topic", "String", "meta"),
    Column("kafka_partition", "UInt16", "meta"),
    Column("kafka_offset", "UInt64", "meta"),
)

_PRIMITIVES = {
    "string": "String",
    "bytes": "String",
    "int": "Int32",
    "long": "Int64",
    "float": "Float32",
    "double": "Float64",
    "boolean": "UInt8",
}


def _split_null(avro_type: Any) -> tuple[Any, bool]:
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        if len(branches) != 1:
            raise SchemaError(f"union {avro_type} has more than one non-null branch")
        return branches[0], len(branches) != len(avro_type)
    return avro_type, False


def _is_timestamp(avro_type: Any) -> bool:
    return isinstance(avro_type, dict) and avro_type.get("logicalType") == "timestamp-millis"


def _scalar(avro_type: Any, where: str) -> tuple[str, Kind]:
    """ClickHouse type and fill kind of a non-null, non-container Avro type."""
    if _is_timestamp(avro_type):
        return "DateTime('UTC')", "ts"
    if isinstance(avro_type, dict):
        if avro_type.get("type") == "enum":
            return "LowCardinality(String)", "value"
        avro_type = avro_type.get("type")
    if avro_type in _PRIMITIVES:
        return _PRIMITIVES[avro_type], "bool" if avro_type == "boolean" else "value"
    raise SchemaError(f"{where}: Avro type {avro_type!r} has no ClickHouse mapping")


def _nullable(ch_type: str, nullable: bool) -> str:
    if not nullable:
        return ch_type
    if ch_type.startswith("LowCardinality("):
        return f"LowCardinality(Nullable({ch_type[len('LowCardinality(') : -1]}))"
    return f"Nullable({ch_type})"


def _array_item(avro_type: Any, where: str) -> str:
    item, nullable = _split_null(avro_type)
    ch_type, _ = _scalar(item, where)
    if ch_type.startswith("LowCardinality("):  # no LowCardinality inside Array on 18.16
        ch_type = ch_type[len("LowCardinality(") : -1]
    return _nullable(ch_type, nullable)


def field_columns(avro_field: dict[str, Any], layout: Layout, table: str) -> list[Column]:
    """The ClickHouse columns of one top-level Avro field."""
    name = avro_field["name"]
    where = f"{table}.{name}"
    pii = avro_field.get("pii")
    default = avro_field.get("default")
    avro_type, nullable = _split_null(avro_field["type"])
    if pii == "free_text":
        return [
            Column(name, "Nullable(String)", "free_text", name),
            Column(f"{name}_length", "UInt32", "text_length", name),
        ]
    if isinstance(avro_type, dict) and avro_type.get("type") == "map":
        values = _array_item(avro_type["values"], where)
        return [
            Column(f"{name}_keys", "Array(String)", "map_keys", name),
            Column(f"{name}_values", f"Array({values})", "map_values", name),
        ]
    if isinstance(avro_type, dict) and avro_type.get("type") == "array":
        items, _ = _split_null(avro_type["items"])
        if isinstance(items, dict) and items.get("type") == "record":
            columns = []
            for sub in items["fields"]:
                item_type = _array_item(sub["type"], f"{where}.{sub['name']}")
                columns.append(
                    Column(
                        f"{name}_{sub['name']}",
                        f"Array({item_type})",
                        "record_array",
                        name,
                        sub["name"],
                    )
                )
            return columns
        return [Column(name, f"Array({_array_item(avro_type['items'], where)})", "array", name)]
    ch_type, kind = _scalar(avro_type, where)
    if ch_type == "String" and name in layout.low_cardinality | _COMMON_LC:
        ch_type = "LowCardinality(String)"
    if pii:
        kind = "pii"
    columns = [Column(name, _nullable(ch_type, nullable), kind, name, str(pii or ""), default)]
    if name == "occurred_at":
        columns.append(Column("occurred_at_ms", "UInt64", "ts_ms", name))
    return columns


@dataclass(frozen=True)
class RawTable:
    """A raw table: its name (the event type), columns and layout."""

    name: str
    columns: tuple[Column, ...]
    layout: Layout

    @property
    def event(self) -> str:
        """The event type the table holds (tables are named after it)."""
        return self.name

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def create_sql(self, database: str = "{db}") -> str:
        width = max(len(c.name) for c in self.columns)
        body = ",\n".join(f"    {c.name:<{width}} {c.type}" for c in self.columns)
        order = ", ".join((*self.layout.order_by, "event_id"))
        return (
            f"CREATE TABLE IF NOT EXISTS {database}.{self.name}\n(\n{body}\n)\n"
            f"ENGINE = ReplacingMergeTree\n"
            f"PARTITION BY {self.layout.partition_by}\n"
            f"ORDER BY ({order})"
        )


def raw_table(sv: SchemaVersion) -> RawTable:
    """The raw table of an event type, as schema version ``sv`` defines its columns."""
    try:
        layout = LAYOUTS[sv.name]
    except KeyError as exc:
        raise SchemaError(
            f"event type {sv.name!r} has no ClickHouse layout; add it to "
            "sinks/clickhouse/tables.py LAYOUTS"
        ) from exc
    columns: list[Column] = []
    for avro_field in sv.definition["fields"]:
        columns.extend(field_columns(avro_field, layout, sv.name))
    columns.extend(META_COLUMNS)
    names = [c.name for c in columns]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise SchemaError(f"{sv.name}: generated columns collide: {sorted(duplicates)}")
    missing = [k for k in layout.order_by if k not in names]
    if missing or "event_id" not in names:
        raise SchemaError(f"{sv.name}: sorting key columns {missing or ['event_id']} not in table")
    nullable_keys = [c.name for c in columns if c.name in layout.order_by and "Nullable" in c.type]
    if nullable_keys:
        raise SchemaError(f"{sv.name}: nullable sorting key columns {nullable_keys}")
    return RawTable(sv.name, tuple(columns), layout)


def raw_tables(catalog: SchemaCatalog | None = None, *, first: bool = False) -> list[RawTable]:
    """Raw tables of every event type with a layout (latest schema versions, or v1 if ``first``)."""
    catalog = catalog or load_catalog()
    return [
        raw_table(catalog.versions(name)[0] if first else catalog.latest(name))
        for name in catalog.names()
        if name in LAYOUTS
    ]


def event_tables(catalog: SchemaCatalog | None = None) -> list[RawTable]:
    """Raw tables of every event type, newest schema versions (what the sink writes)."""
    return raw_tables(catalog)


def offsets_view_sql(table: str, database: str = "{db}") -> str:
    """The materialized view that records every inserted block's Kafka offsets (the fence)."""
    return (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.{table}__offsets_mv\n"
        f"TO {database}.sink_offsets AS\n"
        "SELECT\n"
        f"    CAST('{table}' AS LowCardinality(String)) AS source_table,\n"
        "    kafka_topic AS topic,\n"
        "    kafka_partition AS kafka_partition,\n"
        "    min(kafka_offset) AS first_offset,\n"
        "    max(kafka_offset) AS last_offset,\n"
        "    count() AS rows,\n"
        "    groupArray(kafka_offset) AS offsets,\n"
        "    max(ingest_time) AS inserted_at\n"
        f"FROM {database}.{table}\n"
        "GROUP BY kafka_topic, kafka_partition"
    )


#: tables the sink fills from Kafka besides the raw tables
SINK_FED_TABLES: tuple[str, ...] = ("dead_letter",)


def generate_raw_migration(catalog: SchemaCatalog | None = None) -> str:
    """Text of ``0001_raw_tables.sql``: v1 of every schema (later versions arrive by sync)."""
    header = (
        "-- Raw event tables, one per event type, generated from the v1 Avro schemas by\n"
        "-- `python -m sinks.clickhouse.tables` (layout: sinks/clickhouse/tables.py LAYOUTS).\n"
        "-- Fields added by later schema versions are added by migrations.sync_columns.\n"
        "-- Query with FINAL: ReplacingMergeTree collapses a re-sent event_id only at merges.\n"
    )
    tables = raw_tables(catalog, first=True)
    return header + "".join(f"\n{table.create_sql()};\n" for table in tables)


def generate_offsets_migration(catalog: SchemaCatalog | None = None) -> str:
    """Text of ``0003_offsets_views.sql``: the fence view of every table the sink fills."""
    header = (
        "-- One materialized view per table the sink fills, recording each inserted block's\n"
        "-- Kafka offsets in sink_offsets (see 0002). Generated by\n"
        "-- `python -m sinks.clickhouse.tables offsets`.\n"
    )
    names: Iterable[str] = [t.name for t in raw_tables(catalog, first=True)]
    names = [*names, *SINK_FED_TABLES]
    return header + "".join(f"\n{offsets_view_sql(name)};\n" for name in names)


def _main(argv: list[str]) -> None:
    which = argv[0] if argv else "raw"
    generators = {"raw": generate_raw_migration, "offsets": generate_offsets_migration}
    sys.stdout.write(generators[which]())


if __name__ == "__main__":  # regenerate a checked-in migration: python -m sinks.clickhouse.tables
    _main(sys.argv[1:])
