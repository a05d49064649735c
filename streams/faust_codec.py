"""Faust value codecs over :class:`streams.codec.AvroCodec` (imported by workers only: it imports
faust, which must never load when the CLI starts).

Encoding needs the event type, which the value alone does not carry, so there are two kinds:

- ``cx_avro.<name>``, one per event type: dumps a record (a mapping, or a faust Record) as that
  type, loads the record dict; for topics of one type (every input and output topic);
- ``cx_avro``: dumps a ``DecodedEvent`` or a ``(name, record)`` pair, loads a ``DecodedEvent``;
  for topics of mixed types.

Loading never needs the type: the schema id in the message names it. Call
:func:`register_codecs` once when the worker starts, then use the names as
``value_serializer``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from faust.serializers import codecs

from cxstream.errors import DecodeError, ValidationError
from streams.codec import AvroCodec, DecodedEvent

CODEC_NAME = "cx_avro"


def _as_mapping(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    asdict = getattr(value, "asdict", None)  # faust.Record
    if callable(asdict):
        record: Mapping[str, Any] = asdict()
        return record
    raise ValidationError(f"cannot encode a {type(value).__name__}: expected a mapping or a "
                          "faust Record")


class AvroEventCodec(codecs.Codec):
    """``cx_avro.<name>``: records of one event type."""

    def __init__(self, avro: AvroCodec, name: str, **kwargs: Any) -> None:
        super().__init__(avro=avro, name=name, **kwargs)
        self.avro = avro
        self.name = name

    def _dumps(self, s: Any) -> bytes:
        return self.avro.encode(self.name, _as_mapping(s))

    def _loads(self, s: bytes) -> Any:
        event = self.avro.decode(s)
        if event.name != self.name:  # the id is not one of this topic's subject
            raise DecodeError(f"schema id {event.schema_id} is a {event.name} schema; this "
                              f"codec reads {self.name}", reason="unknown_schema_id")
        return event.record


class AvroAnyCodec(codecs.Codec):
    """``cx_avro``: events of any type, as ``DecodedEvent`` (or ``(name, record)`` to dump)."""

    def __init__(self, avro: AvroCodec, **kwargs: Any) -> None:
        super().__init__(avro=avro, **kwargs)
        self.avro = avro

    def _dumps(self, s: Any) -> bytes:
        if isinstance(s, DecodedEvent) or (isinstance(s, tuple) and len(s) >= 2):
            return self.avro.encode(s[0], _as_mapping(s[1]))
        raise ValidationError(f"{CODEC_NAME} encodes (name, record) pairs or DecodedEvent, "
                              f"got {type(s).__name__}; use {CODEC_NAME}.<name> for records")

    def _loads(self, s: bytes) -> Any:
        return self.avro.decode(s)


def register_codecs(avro: AvroCodec, names: Iterable[str] | None = None) -> list[str]:
    """Register ``cx_avro`` and ``cx_avro.<name>`` for each event type; the names registered.

    ``names`` defaults to every type the codec's registry knows (when it can list them).
    """
    if names is None:
        lister = getattr(avro.registry, "names", None)
        names = lister() if callable(lister) else ()
    registered = [CODEC_NAME]
    codecs.register(CODEC_NAME, AvroAnyCodec(avro))
    for name in names:
        codecs.register(f"{CODEC_NAME}.{name}", AvroEventCodec(avro, name))
        registered.append(f"{CODEC_NAME}.{name}")
    return registered


__all__ = ["CODEC_NAME", "AvroAnyCodec", "AvroEventCodec", "register_codecs"]
