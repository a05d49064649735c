"""Decoded events -> columnar rows of the raw tables, with personal data handled on the way.

- PII-marked fields (``"pii": "<class>"``) hold the keyed-HMAC pseudonym of the value
  (:func:`cxstream.privacy.pseudonymiser`), unless ``settings.privacy.store_pii_in_clear``.
- ``free_text`` fields never land unless ``store_pii_in_clear``: the column holds NULL and
  ``<field>_length`` keeps how long the text was (0 when there was none).
- Timestamps are epoch milliseconds (the codec's convention); ``DateTime`` columns get seconds.
  A value no column can hold raises :class:`~sinks.clickhouse.errors.UnstorableValueError`,
  which the sink sends to the dead-letter topic.

Rows are built column by column into a :class:`TableBatch`, the shape clickhouse-driver's
columnar insert and chdb's Arrow insert both take without further copying.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from cxstream.privacy import pseudonymiser
from cxstream.settings import Settings
from schemas import SchemaCatalog, load_catalog
from sinks.clickhouse.errors import UnstorableValueError
from sinks.clickhouse.tables import Column, RawTable, raw_tables

_MAX_SECONDS = 2**32 - 1  # DateTime is UInt32 seconds


class Origin(NamedTuple):
    """Where a row came from: its Kafka coordinates (the sink's deduplication identity)."""

    topic: str
    partition: int
    offset: int
    schema_id: int = 0


@dataclass
class TableBatch:
    """Rows for one table, columnar. Every table the sink fills carries its rows' Kafka
    coordinates in the ``kafka_topic``/``kafka_partition``/``kafka_offset`` columns, which is
    where :attr:`origins` comes from (no per-row objects on the hot path)."""

    table: str
    columns: tuple[str, ...]
    data: list[list[Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.data:
            self.data = [[] for _ in self.columns]

    def __len__(self) -> int:
        return len(self.data[0]) if self.data else 0

    def append(self, values: Sequence[Any]) -> None:
        for column, value in zip(self.data, values, strict=True):
            column.append(value)

    def subset(self, indices: Iterable[int]) -> TableBatch:
        """A batch with only the rows at ``indices`` (bisecting, skipping fenced rows)."""
        picked = list(indices)
        return TableBatch(
            self.table, self.columns, [[column[i] for i in picked] for column in self.data]
        )

    def slice(self, start: int, stop: int) -> TableBatch:
        """Rows ``start:stop`` (list slices: cheaper than :meth:`subset`)."""
        return TableBatch(self.table, self.columns, [column[start:stop] for column in self.data])

    def column(self, name: str) -> list[Any]:
        return self.data[self.columns.index(name)]

    @property
    def origins(self) -> list[Origin]:
        """The Kafka coordinates of every row."""
        topics = self.column("kafka_topic")
        partitions = self.column("kafka_partition")
        offsets = self.column("kafka_offset")
        schema_ids = self.column("schema_id") if "schema_id" in self.columns else [0] * len(offsets)
        return [Origin(*row) for row in zip(topics, partitions, offsets, schema_ids, strict=True)]


#: a batch's values per source field (field name -> one value per record): what the builders
#: read, from dict records (:func:`fields_from_records`) or straight from the messages
#: (:meth:`streams.codec.AvroCodec.columns_plan`)
FieldColumns = Mapping[str, list[Any]]
ColumnBuilder = Callable[[FieldColumns, int], list[Any]]
_INT = {int}
_INT_OR_NONE = {int, type(None)}


def fields_from_records(
    records: Sequence[Mapping[str, Any]], names: Iterable[str]
) -> dict[str, list[Any]]:
    """The ``names`` fields of dict records as columns (a missing field reads as None, as the
    codec fills it)."""
    fields: dict[str, list[Any]] = {}
    for name in names:
        try:
            fields[name] = [r[name] for r in records]
        except KeyError:
            fields[name] = [r.get(name) for r in records]
    return fields


def take(fields: FieldColumns, keep: Sequence[int]) -> dict[str, list[Any]]:
    """The values at ``keep`` of every field."""
    return {name: [values[i] for i in keep] for name, values in fields.items()}


class RowBuilder:
    """Turns decoded records into columns of their raw table (one builder per sink).

    Columns are built whole, one pass per column over the batch's field values (and none for a
    field stored as it is): about five times faster than assembling rows value by value, and
    already the shape of a columnar insert.
    """

    def __init__(self, settings: Settings, catalog: SchemaCatalog | None = None) -> None:
        self.clear = settings.privacy.store_pii_in_clear
        self._pseudonymise = pseudonymiser(settings)
        self.tables: dict[str, RawTable] = {
            t.name: t for t in raw_tables(catalog or load_catalog())
        }
        self._builders: dict[str, list[ColumnBuilder]] = {
            name: [self._column_builder(c) for c in table.columns if c.kind != "meta"]
            for name, table in self.tables.items()
        }
        #: per table: the record fields its columns are built from
        self.sources: dict[str, tuple[str, ...]] = {
            name: tuple(dict.fromkeys(c.source for c in table.columns if c.source))
            for name, table in self.tables.items()
        }
        #: per table: column index and field of every DateTime column (range-checked)
        self._timestamps: dict[str, list[tuple[int, str]]] = {
            name: [(i, c.source) for i, c in enumerate(table.columns) if c.kind == "ts"]
            for name, table in self.tables.items()
        }

    def new_batch(self, table: str) -> TableBatch:
        return TableBatch(table, self.tables[table].column_names)

    def build(
        self,
        table: str,
        records: Sequence[Mapping[str, Any]],
        origins: Sequence[Origin],
        ingest_time: int,
    ) -> tuple[TableBatch, list[tuple[int, UnstorableValueError]]]:
        """Columns of ``records``, and ``(index, error)`` of records no column can hold."""
        return self.build_columns(
            table,
            records,
            [o.topic for o in origins],
            [o.partition for o in origins],
            [o.offset for o in origins],
            [o.schema_id for o in origins],
            ingest_time,
        )

    def build_columns(
        self,
        table: str,
        records: Sequence[Mapping[str, Any]],
        topics: list[str],
        partitions: list[int],
        offsets: list[int],
        schema_ids: list[int],
        ingest_time: int,
    ) -> tuple[TableBatch, list[tuple[int, UnstorableValueError]]]:
        """:meth:`build` with the coordinates as parallel lists."""
        fields = fields_from_records(records, self.sources[table])
        return self.build_fields(
            table, fields, topics, partitions, offsets, schema_ids, ingest_time
        )

    def build_fields(
        self,
        table: str,
        fields: FieldColumns,
        topics: list[str],
        partitions: list[int],
        offsets: list[int],
        schema_ids: list[int],
        ingest_time: int,
    ) -> tuple[TableBatch, list[tuple[int, UnstorableValueError]]]:
        """:meth:`build_columns` from field columns (the sink's fast path). Fields the table
        reads and ``fields`` lacks are NULL; the returned columns may be ``fields``' own lists
        (not copied), so neither side may change them afterwards."""
        count = len(offsets)
        missing = [name for name in self.sources[table] if name not in fields]
        if missing:
            fields = {**fields, **{name: [None] * count for name in missing}}
        meta = (topics, partitions, offsets, schema_ids)
        data = self._columns(table, fields, count, meta, ingest_time)
        bad = self._out_of_range(table, data, fields)
        columns = self.tables[table].column_names
        if not bad:
            return TableBatch(table, columns, data), []
        keep = [i for i in range(count) if i not in bad]
        kept = (
            [topics[i] for i in keep],
            [partitions[i] for i in keep],
            [offsets[i] for i in keep],
            [schema_ids[i] for i in keep],
        )
        data = self._columns(table, take(fields, keep), len(keep), kept, ingest_time)
        return TableBatch(table, columns, data), sorted(bad.items())

    def row(
        self, table: str, record: Mapping[str, Any], origin: Origin, ingest_time: int
    ) -> list[Any]:
        """Values of one row in column order (raises ``UnstorableValueError``)."""
        batch, bad = self.build(table, [record], [origin], ingest_time)
        if bad:
            raise bad[0][1]
        return [column[0] for column in batch.data]

    def _columns(
        self,
        table: str,
        fields: FieldColumns,
        count: int,
        meta: tuple[list[str], list[int], list[int], list[int]],
        ingest_time: int,
    ) -> list[list[Any]]:
        data = [build(fields, count) for build in self._builders[table]]
        topics, partitions, offsets, schema_ids = meta
        # META_COLUMNS order: ingest_time, schema_id, kafka_topic, kafka_partition, kafka_offset
        data.append([ingest_time] * count)
        data.extend((schema_ids, topics, partitions, offsets))
        return data

    def _out_of_range(
        self, table: str, data: list[list[Any]], fields: FieldColumns
    ) -> dict[int, UnstorableValueError]:
        bad: dict[int, UnstorableValueError] = {}
        for index, name in self._timestamps[table]:
            column = [v for v in data[index] if v is not None]
            if not column or (min(column) >= 0 and max(column) <= _MAX_SECONDS):
                continue
            for i, seconds in enumerate(data[index]):
                if seconds is not None and not 0 <= seconds <= _MAX_SECONDS and i not in bad:
                    where = f"{table}.{name}"
                    bad[i] = UnstorableValueError(
                        f"{where}={fields[name][i]!r} ms is outside the DateTime range 1970..2106",
                        field=where,
                    )
        return bad

    def _column_builder(self, column: Column) -> ColumnBuilder:
        name, kind = column.source, column.kind
        nullable = "Nullable" in column.type
        if kind in {"value", "bool"}:  # as they are (booleans too: UInt8 takes True/False)
            return lambda fields, n: fields[name]
        if kind == "ts":
            if nullable:
                return lambda fields, n: _seconds_or_none(fields[name])
            return lambda fields, n: _seconds(fields[name])
        if kind == "ts_ms":
            return lambda fields, n: _millis(fields[name])
        if kind == "pii":
            if self.clear:
                return lambda fields, n: fields[name]
            pseudonymise, pii_class = self._pseudonymise, column.detail
            return lambda fields, n: [
                None if v is None else pseudonymise(v, pii_class) for v in fields[name]
            ]
        if kind == "free_text":
            if self.clear:
                return lambda fields, n: fields[name]
            return lambda fields, n: [None] * n
        if kind == "text_length":
            return lambda fields, n: [len(v or "") for v in fields[name]]
        if kind == "map_keys":
            return lambda fields, n: [list(v or ()) for v in fields[name]]
        if kind == "map_values":
            return lambda fields, n: [list((v or {}).values()) for v in fields[name]]
        if kind == "array":
            return lambda fields, n: [list(v or ()) for v in fields[name]]
        if kind == "record_array":
            sub = column.detail
            return lambda fields, n: [[item[sub] for item in v or ()] for v in fields[name]]
        raise ValueError(f"{column.name}: unknown column kind {kind!r}")


# the codec's timestamps are int epoch milliseconds: one type check per column, not per value
def _seconds(values: list[Any]) -> list[int]:
    if set(map(type, values)) <= _INT:
        return [v // 1000 for v in values]
    return [_ms(v) // 1000 for v in values]


def _seconds_or_none(values: list[Any]) -> list[int | None]:
    if set(map(type, values)) <= _INT_OR_NONE:
        return [None if v is None else v // 1000 for v in values]
    return [None if v is None else _ms(v) // 1000 for v in values]


def _millis(values: list[Any]) -> list[int]:
    if set(map(type, values)) <= _INT:
        return values
    return [_ms(v) for v in values]


def _ms(value: Any) -> int:
    # the codec returns int epoch milliseconds; tolerate datetimes from other producers of dicts
    if type(value) is int:
        return value
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


#: columns of the ``dead_letter`` table, in the order :func:`dead_letter_row` returns values
DEAD_LETTER_COLUMNS: tuple[str, ...] = (
    "at", "at_ms", "source_topic", "source_partition", "source_offset", "error_class", "reason",
    "step", "message", "message_length", "size", "ingest_time", "kafka_topic", "kafka_partition",
    "kafka_offset",
)  # fmt: skip


def dead_letter_row(
    headers: Sequence[tuple[str, bytes | None]],
    timestamp_ms: int | None,
    size: int,
    origin: Origin,
    ingest_time: int,
    *,
    keep_message: bool = False,
) -> list[Any]:
    """A ``dead_letter`` row from a message of the dead-letter topic (headers of streams.dlq).

    The error message is kept only with ``keep_message`` (it may quote a value of the event).
    """
    from streams import dlq

    h = {k: (v or b"").decode("utf-8", "replace") for k, v in headers}
    at_ms = _int(h.get(dlq.H_AT)) or timestamp_ms or ingest_time * 1000
    message = h.get(dlq.H_ERROR_MESSAGE, "")
    return [
        min(max(at_ms // 1000, 0), _MAX_SECONDS),
        max(at_ms, 0),
        h.get(dlq.H_SOURCE_TOPIC, ""),
        _int(h.get(dlq.H_SOURCE_PARTITION), -1),
        _int(h.get(dlq.H_SOURCE_OFFSET), -1),
        h.get(dlq.H_ERROR_CLASS, ""),
        h.get(dlq.H_ERROR_REASON, ""),
        h.get(dlq.H_STEP, ""),
        message if keep_message else None,
        len(message),
        size,
        ingest_time,
        origin.topic,
        origin.partition,
        origin.offset,
    ]


def _int(text: str | None, default: int = 0) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default
