"""Faster client-side serialisation of insert blocks for clickhouse-driver (native protocol).

clickhouse-driver packs most column types well, but a few that every raw table has cost the
sink's insert thread a Python loop per value: ``DateTime`` (a type check per value even for
epoch ints), every ``Nullable(...)`` column (a per-value loop building the null map and
replacing ``None``), and ``String`` columns holding one repeated value (``kafka_topic``).
:class:`FastBlockOutputStream` writes those columns with whole-column operations and leaves
every other column (and every column it cannot prove it handles) to the driver's own writer,
so the bytes on the wire are the same Native format either way (tests compare them).

- ``DateTime`` / ``DateTime('tz')``: values must all be ints (what the sink builds); one
  ``struct.pack``. Anything else (``datetime`` objects, out-of-range) -> the driver.
- ``String``: one value repeated -> its encoding written once, repeated; a few distinct values
  (a sample of the column decides) -> each encoded once and looked up per value; otherwise the
  driver's Cython writer.
- ``Nullable(T)`` for ``T`` a String, integer, float or DateTime: the null map in one
  ``bytes()`` call (or a constant when no / every value is NULL), then ``T`` as above.

Nothing here mutates the caller's column lists (a retried insert resends the same values), and a
column is serialised completely before any of its bytes are written, so a fallback to the
driver after a failed fast attempt writes the column once.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from clickhouse_driver import defines
from clickhouse_driver.columns.service import write_column
from clickhouse_driver.streams.native import BlockOutputStream
from clickhouse_driver.varint import write_varint
from clickhouse_driver.writer import write_binary_str, write_binary_uint8

#: struct format of the fixed-width types a Nullable column may wrap
_FORMATS = {
    "Int8": "b", "Int16": "h", "Int32": "i", "Int64": "q",
    "UInt8": "B", "UInt16": "H", "UInt32": "I", "UInt64": "Q",
    "Float32": "f", "Float64": "d",
}  # fmt: skip

#: serialise a column's values to bytes, or ``None`` to leave the column to the driver
Encoder = Callable[[Sequence[Any]], bytes | None]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _pack(fmt: str) -> Encoder:
    def encode(items: Sequence[Any]) -> bytes | None:
        try:
            return struct.pack(f"<{len(items)}{fmt}", *items)
        except (struct.error, TypeError, OverflowError):
            return None  # the driver's writer raises its own, precise error

    return encode


def _datetime(items: Sequence[Any]) -> bytes | None:
    # struct accepts only ints for "I" (a datetime raises): exactly the driver's int fast path
    try:
        return struct.pack(f"<{len(items)}I", *items)
    except (struct.error, TypeError, OverflowError):
        return None


#: a String column is written value by value from a table of its distinct encodings when a
#: sample of this many values holds at most _FEW_SAMPLED distinct ones, and the column at most
#: _FEW_DISTINCT (channel names, topics, sources: a dict lookup each instead of an encode)
_SAMPLE = 256
_FEW_SAMPLED = 32
_FEW_DISTINCT = 1024


def _string(encoding: str) -> Encoder:
    def encode(items: Sequence[Any]) -> bytes | None:
        if not items:
            return b""
        first = items[0]
        # (the ends first: a column of distinct values fails there, not after counting all)
        if type(first) is str and items[-1] == first and items.count(first) == len(items):
            data = first.encode(encoding)
            return (_varint(len(data)) + data) * len(items)
        try:
            few = len(set(items[:_SAMPLE])) <= _FEW_SAMPLED
        except TypeError:  # unhashable values: certainly not strings
            return None
        if few:
            distinct = set(items)
            if len(distinct) <= _FEW_DISTINCT and all(type(v) is str for v in distinct):
                table = {}
                for value in distinct:
                    data = value.encode(encoding)
                    table[value] = _varint(len(data)) + data
                return b"".join(map(table.__getitem__, items))
        return None  # the driver's Cython writer (its own loop is as fast as it gets)

    return encode


def _nested(spec: str, encoding: str) -> tuple[Encoder, Any] | None:
    """Encoder and null value for the inner type of a Nullable column (None: not handled)."""
    if spec == "String":
        return _string(encoding), ""
    if spec == "DateTime" or spec.startswith("DateTime("):
        return _datetime, 0
    fmt = _FORMATS.get(spec)
    if fmt is not None:
        return _pack(fmt), 0
    return None


def column_encoder(spec: str, encoding: str) -> Encoder | None:
    """The fast encoder of a column type, ``None`` for types left to the driver."""
    if spec == "DateTime" or spec.startswith("DateTime("):
        return _datetime
    if spec == "String":
        return _string(encoding)
    if spec.startswith("Nullable(") and spec.endswith(")"):
        found = _nested(spec[len("Nullable(") : -1], encoding)
        if found is None:
            return None
        inner, null = found
        inner_spec = spec[len("Nullable(") : -1]

        def encode(items: Sequence[Any]) -> bytes | None:
            n = len(items)
            nones = items.count(None)
            if not nones:
                nulls, values = b"\x00" * n, items
            elif nones == n:
                nulls, values = b"\x01" * n, [null] * n
            else:
                nulls = bytes([v is None for v in items])
                values = [null if v is None else v for v in items]
            body = inner(values)
            if body is None and inner_spec == "String":
                body = _driver_strings(values, encoding)
            return None if body is None else nulls + body

        return encode
    return None


def _driver_strings(values: Sequence[Any], encoding: str) -> bytes | None:
    """Strings through the driver's Cython writer, into bytes (non-str values: None)."""
    from clickhouse_driver.bufferedwriter import BufferedSocketWriter

    class _Collect:
        def __init__(self) -> None:
            self.parts: list[bytes] = []

        def sendall(self, data: bytes) -> None:
            self.parts.append(bytes(data))

    sink = _Collect()
    writer = BufferedSocketWriter(sink, 1 << 20)
    try:
        writer.write_strings(list(values), encoding=encoding)
    except (TypeError, AttributeError, ValueError, UnicodeError):
        return None
    writer.flush()
    return b"".join(sink.parts)


class FastBlockOutputStream(BlockOutputStream):
    """The driver's block writer with :func:`column_encoder` for the columns it handles."""

    def __init__(self, fout: Any, context: Any) -> None:
        super().__init__(fout, context)
        self._encoders: dict[str, Encoder | None] = {}

    def _encoder(self, spec: str) -> Encoder | None:
        if spec not in self._encoders:
            encoding = self.context.client_settings.get("strings_encoding") or "utf-8"
            self._encoders[spec] = column_encoder(spec, encoding)
        return self._encoders[spec]

    def write(self, block: Any) -> None:
        # the driver's BlockOutputStream.write (clickhouse-driver 0.2.x), column by column
        revision = self.context.server_info.used_revision
        fout = self.fout
        if revision >= defines.DBMS_MIN_REVISION_WITH_BLOCK_INFO:
            block.info.write(fout)
        n_columns = block.num_columns
        write_varint(n_columns, fout)
        write_varint(block.num_rows, fout)
        for i, (name, spec) in enumerate(block.columns_with_types):
            write_binary_str(name, fout)
            write_binary_str(spec, fout)
            if not n_columns:
                continue
            try:
                items = block.get_column_by_index(i)
            except IndexError as exc:
                raise ValueError("Different rows length") from exc
            if revision >= defines.DBMS_MIN_REVISION_WITH_CUSTOM_SERIALIZATION:
                write_binary_uint8(0, fout)
            encoder = self._encoder(spec)
            data = encoder(items) if encoder is not None and not block.types_check else None
            if data is not None:
                fout.write(data)
            else:
                write_column(self.context, name, spec, items, fout, types_check=block.types_check)
        self.finalize()


def install(client: Any) -> None:
    """Make ``client`` (a clickhouse-driver ``Client``) write blocks with the fast writer."""
    # the client's current connection is `connection`; `connections` holds the alternatives
    for connection in [client.connection, *client.connections]:
        if getattr(connection, "compression", False):
            continue  # compressed blocks keep the driver's own stream

        def fast(connection: Any = connection) -> FastBlockOutputStream:
            return FastBlockOutputStream(connection.fout, connection.context)

        connection.get_block_out_stream = fast
