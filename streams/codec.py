"""Avro codec in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, body.

fastavro interprets the schema dict for every value it reads or writes, which costs about a
microsecond per field on these machines (~65k events/s): too slow for 200k events/s. So each
schema is compiled once, with ``exec``, into straight-line Python (one function per record type)
that checks and writes, or reads, the fields in order, with table lookups for the common varint
lengths. fastavro stays the reference: it handles what the compiler declines (unions whose
branches a value's Python type cannot tell apart, schema resolution beyond added or removed
fields), and the tests check that both give the same bytes and values on random records.

Three functions per schema version: ``write`` (check + write, :meth:`AvroCodec.encode`),
``check`` (:meth:`AvroCodec.validate`) and ``write_unchecked`` (the benchmark's raw figure). A
failed check only raises; :func:`explain`, a plain reading of the rules, then words the error
with the dotted path of the field. Generated code only ever embeds names through ``repr``.

Logical types are not converted: timestamps are read as int epoch milliseconds (the project's
convention) and written from int or ``datetime`` (naive means UTC, as in fastavro).

This module is the codec itself (:class:`AvroCodec`: plans per schema id, framing, errors); the
parts live in ``streams.avro_wire`` (framing constants, :class:`DecodedEvent`),
``streams.avro_schema`` (schema helpers), ``streams.avro_source`` (exec of generated code),
``streams.avro_writer`` / ``streams.avro_reader`` (the compilers), ``streams.avro_plans``
(compiled code or the fastavro fallback per version) and ``streams.avro_explain``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from cxstream.errors import DecodeError, SchemaError, ValidationError
from schemas import SchemaVersion
from streams.avro_explain import explain
from streams.avro_plans import _ReadPlan, _WritePlan
from streams.avro_plans import _strip_logical as _strip_logical  # re-exported for the tests
from streams.avro_reader import _EndError
from streams.avro_wire import _HEADER, HEADER_SIZE, MAGIC, DecodedEvent
from streams.registry import SchemaRegistry

if TYPE_CHECKING:
    from cxstream.settings import Settings


class AvroCodec:
    """Encode and decode events of the catalog in the Confluent wire format.

    ``encode`` checks the record against the newest schema of its type (every field, nested
    values included; unknown fields rejected) and raises :class:`ValidationError` naming the
    dotted path of the first bad field. ``decode`` reads with the writer schema the id names,
    resolved to the newest version of that type, and raises :class:`DecodeError` whose
    ``reason`` is one of truncated, oversized, bad_magic, unknown_schema_id, bad_body.
    """

    def __init__(self, registry: SchemaRegistry, *, max_event_bytes: int = 256 * 1024) -> None:
        self.registry = registry
        self.max_event_bytes = max_event_bytes
        self._writers: dict[str, _WritePlan] = {}
        # compiled readers by the 5 header bytes: one slice and one lookup per message
        self._readers: dict[bytes, Callable[[bytes], DecodedEvent]] = {}
        self._read_plans: dict[int, _ReadPlan] = {}
        # a registry whose versions never change (the embedded one) need not be asked each time
        self._fixed = bool(getattr(registry, "immutable", False))

    # ---- encoding

    def _write_plan(self, name: str) -> _WritePlan:
        sv = self.registry.latest(name)
        plan = self._writers.get(name)
        if plan is None or plan.sv is not sv:
            if plan is None or plan.schema_id != sv.schema_id:
                plan = _WritePlan(sv)
            self._writers[name] = plan
        return plan

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        """Validate ``record`` against the newest schema of ``name`` and frame it."""
        plan = self._writers.get(name) if self._fixed else None
        if plan is None:
            plan = self._write_plan(name)
        try:
            buf = plan.write(record)
        except Exception as exc:  # _InvalidError, KeyError (missing), TypeError, OverflowError
            raise _validation_error(plan.sv, record, exc) from exc
        if len(buf) > self.max_event_bytes:
            raise ValidationError(
                f"encoded event is {len(buf)} bytes, limit {self.max_event_bytes}", schema=name
            )
        return bytes(buf)

    def validate(self, name: str, record: Mapping[str, Any]) -> None:
        """Check ``record`` against the newest schema of ``name`` without encoding it."""
        plan = self._write_plan(name)
        try:
            plan.check(record)
        except Exception as exc:
            raise _validation_error(plan.sv, record, exc) from exc

    def encode_unchecked(self, name: str, record: Mapping[str, Any]) -> bytes:
        """Frame ``record`` without checking it: only for records already validated."""
        return bytes(self._write_plan(name).write_unchecked(record))

    def refresh(self) -> None:
        """Forget compiled plans, so the next events use the registry's newest versions.

        Plans are made on first use: with a registry whose versions change (an HTTP one), a
        decoder keeps resolving each writer id to the newest version it knew when it first
        saw that id until this is called (encoders follow the registry's answers).
        """
        self._writers.clear()
        self._readers.clear()
        self._read_plans.clear()

    # ---- decoding

    def _read_plan(self, schema_id: int) -> _ReadPlan:
        plan = self._read_plans.get(schema_id)
        if plan is None:
            try:
                writer = self.registry.by_id(schema_id)
            except SchemaError as exc:
                raise DecodeError(f"schema id {schema_id}: {exc}",
                                  reason="unknown_schema_id") from exc
            plan = self._read_plans[schema_id] = _ReadPlan(
                writer, self.registry.latest(writer.name))
            self._readers[_HEADER.pack(MAGIC, schema_id)] = plan.decode
        return plan

    def decode(self, data: bytes) -> DecodedEvent:
        """Decode with the writer schema named by the id, resolved to the newest reader schema."""
        read = self._readers.get(data[:HEADER_SIZE]) if type(data) is bytes else None
        if read is None or len(data) > self.max_event_bytes:
            return self._decode_checked(data)
        try:
            return read(data)
        except Exception as exc:
            raise _decode_error(self._read_plans[_unpack_header(data)[1]], len(data),
                                exc) from exc

    def columns_plan(self, header: bytes) -> ColumnsPlan:
        """How to read messages framed with ``header`` (their first 5 bytes) as columns.

        ``read(messages)`` decodes a list of messages of this header into one list per field
        of the newest reader schema (:attr:`ColumnsPlan.fields`, in order), with the same
        schema resolution as :meth:`decode`, and no dict per message: for consumers that want
        columns. It does no size check and raises the compiled reader's raw exception at the
        first message that does not decode: a caller meeting one decodes the messages with
        :meth:`decode` for the worded :class:`DecodeError`. Raises :class:`DecodeError` for a
        header that is not one (short, bad magic, unknown schema id).
        """
        try:
            magic, schema_id = _unpack_header(header)
        except (struct.error, TypeError) as exc:
            raise DecodeError("header shorter than 5 bytes", reason="truncated") from exc
        if magic != MAGIC:
            raise DecodeError(f"magic byte {magic}, expected {MAGIC}", reason="bad_magic")
        plan = self._read_plan(schema_id)
        return ColumnsPlan(plan.name, schema_id, plan.fields, plan.columns_reader())

    def _decode_checked(self, data: bytes) -> DecodedEvent:
        """The slow path: the first message of an id, or a message that is not plain bytes."""
        try:
            magic, schema_id = _unpack_header(data)
        except (struct.error, TypeError) as exc:
            size = len(data) if isinstance(data, (bytes, bytearray, memoryview)) else 0
            raise DecodeError(
                f"message of {size} bytes is shorter than the 5-byte header", reason="truncated"
            ) from exc
        if len(data) > self.max_event_bytes:
            raise DecodeError(
                f"message is {len(data)} bytes, limit {self.max_event_bytes}", reason="oversized"
            )
        if magic != MAGIC:
            raise DecodeError(f"magic byte {magic}, expected {MAGIC}", reason="bad_magic")
        plan = self._read_plan(schema_id)
        data = bytes(data)  # bytearray/memoryview slices have no .decode()
        try:
            return plan.decode(data)
        except Exception as exc:
            raise _decode_error(plan, len(data), exc) from exc


_unpack_header = _HEADER.unpack_from


class ColumnsPlan(NamedTuple):
    """What :meth:`AvroCodec.columns_plan` returns: the event type, the writer schema id, the
    reader's field names and the function that reads messages into one list per field."""

    name: str
    schema_id: int
    fields: tuple[str, ...]
    read: Callable[[Sequence[bytes]], list[list[Any]]]


def _decode_error(plan: _ReadPlan, size: int, exc: Exception) -> DecodeError:
    where = f"{plan.name} v{plan.writer.version} (schema id {plan.schema_id})"
    if isinstance(exc, _EndError):
        if exc.pos > size:
            return DecodeError(f"{where}: body ends {exc.pos - size} bytes early",
                               reason="truncated")
        return DecodeError(f"{where}: {size - exc.pos} trailing bytes after the record",
                           reason="bad_body")
    if isinstance(exc, (IndexError, EOFError, struct.error)):
        return DecodeError(f"{where}: body ends early: {exc!r}", reason="truncated")
    # _BadBodyError, KeyError (enum index), TypeError (negative length), UnicodeDecodeError...
    return DecodeError(f"{where}: body does not decode: {exc!r}", reason="bad_body")


def _validation_error(sv: SchemaVersion, record: Any, exc: Exception) -> ValidationError:
    try:
        found = explain(sv.definition, record)
    except RecursionError:  # a record that contains itself
        return ValidationError("record nests too deeply (does it contain itself?)", schema=sv.name)
    if found is None:  # the compiled check and the explanation disagree: say what we know
        return ValidationError(f"record rejected by the writer: {exc!r}", schema=sv.name)
    field, message = found
    return ValidationError(message, schema=sv.name, field=field)


def build_codec(settings: Settings) -> AvroCodec:
    """The codec for these settings: its registry from :func:`streams.registry.build_registry`."""
    from streams.registry import build_registry

    return AvroCodec(build_registry(settings), max_event_bytes=settings.max_event_bytes)


__all__ = [
    "HEADER_SIZE", "MAGIC", "AvroCodec", "ColumnsPlan", "DecodedEvent", "build_codec", "explain",
]  # fmt: skip
