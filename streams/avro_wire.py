"""The Confluent wire format's framing: magic byte 0, 4-byte big-endian schema id, then the body;
and :class:`DecodedEvent`, what a decoded message is."""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

MAGIC = 0
HEADER_SIZE = 5
_HEADER = struct.Struct(">bI")


class DecodedEvent(NamedTuple):
    name: str
    record: dict[str, Any]
    schema_id: int


__all__ = ["HEADER_SIZE", "MAGIC", "DecodedEvent"]
