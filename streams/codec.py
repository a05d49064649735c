"""Avro codec in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, body."""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from typing import Any, NamedTuple

import fastavro
from fastavro.validation import validate

from cxstream.errors import DecodeError, SchemaError, ValidationError
from schemas import SchemaVersion
from streams.registry import SchemaRegistry

MAGIC = 0
_HEADER = struct.Struct(">bI")


class DecodedEvent(NamedTuple):
    name: str
    record: dict[str, Any]
    schema_id: int


class AvroCodec:
    def __init__(self, registry: SchemaRegistry, *, max_event_bytes: int = 256 * 1024) -> None:
        self.registry = registry
        self.max_event_bytes = max_event_bytes

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        """Validate ``record`` against the newest schema of ``name`` and frame it."""
        sv = self.registry.latest(name)
        _check(sv, record)
        buf = io.BytesIO()
        buf.write(_HEADER.pack(MAGIC, sv.schema_id))
        fastavro.schemaless_writer(buf, sv.parsed, record)
        data = buf.getvalue()
        if len(data) > self.max_event_bytes:
            raise ValidationError(
                f"encoded event is {len(data)} bytes, limit {self.max_event_bytes}", schema=name
            )
        return data

    def decode(self, data: bytes) -> DecodedEvent:
        """Decode with the writer schema named by the id, resolved to the newest reader schema."""
        if data is None or len(data) < _HEADER.size:
            raise DecodeError("message shorter than the 5-byte header", reason="truncated")
        if len(data) > self.max_event_bytes:
            raise DecodeError(f"message is {len(data)} bytes", reason="oversized")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise DecodeError(f"magic byte {magic}, expected {MAGIC}", reason="bad_magic")
        try:
            writer = self.registry.by_id(schema_id)
        except SchemaError as exc:
            raise DecodeError(str(exc), reason="unknown_schema_id") from exc
        reader = self.registry.latest(writer.name)
        buf = io.BytesIO(data)
        buf.seek(_HEADER.size)
        try:
            record = fastavro.schemaless_reader(
                buf, writer.parsed, reader.parsed if reader.schema_id != schema_id else None
            )
        except Exception as exc:  # fastavro raises EOFError, ValueError, UnicodeDecodeError...
            raise DecodeError(
                f"{writer.name} v{writer.version}: body does not decode: {exc!r}",
                reason="bad_body",
            ) from exc
        if buf.tell() != len(data):
            raise DecodeError(
                f"{writer.name}: {len(data) - buf.tell()} trailing bytes after the record",
                reason="bad_body",
            )
        return DecodedEvent(writer.name, record, schema_id)  # type: ignore[arg-type]


def _check(sv: SchemaVersion, record: Mapping[str, Any]) -> None:
    unknown = record.keys() - sv.field_names
    if unknown:
        field = sorted(unknown)[0]
        raise ValidationError("field is not in the schema", schema=sv.name, field=field)
    try:
        validate(record, sv.parsed, raise_errors=True)
    except fastavro.validation.ValidationError as exc:
        first = exc.errors[0]
        field = str(first.field or "").split(".")[-1] if first.field else ""
        raise ValidationError(
            f"{first.datum!r} is not a valid {first.schema}", schema=sv.name, field=field
        ) from exc
