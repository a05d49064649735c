"""Per-schema-version plans: how records of one version are checked and written, and how
messages of one writer id are read, with the compiled code or, where the compilers decline the
schema, with fastavro."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import fastavro

from schemas import SchemaVersion
from streams.avro_explain import explain
from streams.avro_reader import _EndError, _ReaderCompiler
from streams.avro_schema import _Names
from streams.avro_source import _UnsupportedError
from streams.avro_wire import _HEADER, HEADER_SIZE, MAGIC, DecodedEvent
from streams.avro_writer import _InvalidError, _WriterCompiler


def _strip_logical(t: Any) -> Any:
    """Copy of a schema without logicalType, so fastavro returns the underlying ints."""
    if isinstance(t, dict):
        return {k: _strip_logical(v) for k, v in t.items() if k != "logicalType"}
    if isinstance(t, list):
        return [_strip_logical(v) for v in t]
    return t


class _WritePlan:
    """How to check and write records of one schema version."""

    def __init__(self, sv: SchemaVersion) -> None:
        self.sv = sv
        self.schema_id = sv.schema_id
        self.header = _HEADER.pack(MAGIC, sv.schema_id)
        self.compiled = True
        names = _Names(sv.definition)
        label = f"{sv.name} v{sv.version}"
        try:
            self.write: Callable[[Any], bytearray] = _WriterCompiler(
                names, check=True, emit=True).compile(sv.definition, label, self.header)
            self.check: Callable[[Any], object] = _WriterCompiler(
                names, check=True, emit=False).compile(sv.definition, label, self.header)
            self.write_unchecked: Callable[[Any], bytearray] = _WriterCompiler(
                names, check=False, emit=True).compile(sv.definition, label, self.header)
        except _UnsupportedError:
            self.compiled = False
            self.write = self.check = self._fastavro_check_write
            self.write_unchecked = self._fastavro_write

    def _fastavro_write(self, record: Any) -> bytearray:
        out = _Appender(bytearray(self.header))
        fastavro.schemaless_writer(out, self.sv.parsed, record)  # type: ignore[arg-type]
        return out.buf

    def _fastavro_check_write(self, record: Any) -> bytearray:
        if explain(self.sv.definition, record) is not None:
            raise _InvalidError
        return self._fastavro_write(record)


class _Appender:
    """The file-like ``write`` fastavro needs, appending to our buffer."""

    def __init__(self, buf: bytearray) -> None:
        self.buf = buf

    def write(self, data: bytes) -> int:
        self.buf += data
        return len(data)


class _ReadPlan:
    """How to read messages written with one schema id, as the newest version of their type.

    ``decode`` gives a :class:`DecodedEvent`; :meth:`columns_reader` (compiled on first use:
    most consumers never ask) reads a list of messages into one list per field of
    :attr:`fields`. Both raise the compiled code's raw exceptions; the codec words them.
    """

    def __init__(self, writer: SchemaVersion, reader: SchemaVersion) -> None:
        self.writer = writer
        self.reader = reader
        self.name = writer.name
        self.schema_id = writer.schema_id
        self.reader_id = reader.schema_id
        #: the reader schema's top-level field names: the order of :meth:`columns_reader`'s lists
        self.fields: tuple[str, ...] = tuple(f["name"] for f in reader.definition["fields"])
        self.compiled = True
        self._label = label = f"{writer.name} v{writer.version} as v{reader.version}"
        self._read_columns: Callable[[Sequence[bytes]], list[list[Any]]] | None = None
        same = writer.schema_id == reader.schema_id
        try:
            self.decode: Callable[[bytes], DecodedEvent] = _ReaderCompiler(
                _Names(writer.definition)
            ).compile(writer.definition, None if same else reader.definition, label,
                      (writer.name, writer.schema_id))
        except _UnsupportedError:
            self.compiled = False
            self._writer_schema = fastavro.parse_schema(_strip_logical(writer.definition))
            self._reader_schema = (
                None if same else fastavro.parse_schema(_strip_logical(reader.definition))
            )
            self.decode = self._fastavro_decode

    def columns_reader(self) -> Callable[[Sequence[bytes]], list[list[Any]]]:
        """``read(framed messages)``: one list of values per name of :attr:`fields`."""
        if self._read_columns is None:
            if self.compiled:
                same = self.writer.schema_id == self.reader_id
                self._read_columns = _ReaderCompiler(_Names(self.writer.definition)).compile(
                    self.writer.definition, None if same else self.reader.definition,
                    f"{self._label} (columns)", (self.name, self.schema_id), columns=True)
            else:
                getters = [itemgetter(name) for name in self.fields]

                def read_columns(messages: Sequence[bytes]) -> list[list[Any]]:
                    records = [self._fastavro_decode(data).record for data in messages]
                    return [list(map(get, records)) for get in getters]

                self._read_columns = read_columns
        return self._read_columns

    def _fastavro_decode(self, data: bytes) -> DecodedEvent:
        buf = io.BytesIO(data)
        buf.seek(HEADER_SIZE)
        record = fastavro.schemaless_reader(buf, self._writer_schema, self._reader_schema)
        if buf.tell() != len(data):
            raise _EndError(buf.tell())
        return DecodedEvent(self.name, record, self.schema_id)  # type: ignore[arg-type]
