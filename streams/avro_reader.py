"""Compiled readers: generates, per writer schema, Python that reads a framed message's body
into a :class:`~streams.avro_wire.DecodedEvent`, resolving the cheap schema changes (fields
added with a default, removed or reordered) to the reader schema.

A second shape, *columns* (``compile(..., columns=True)``), reads a whole list of messages of
one writer schema into one list per top-level reader field (in the reader's order), appending
each value where it was read: no dict, tuple or call per message, for columnar consumers (the
ClickHouse sink). It raises on the first message that does not decode, like the single one."""

from __future__ import annotations

import copy
import struct
from collections.abc import Callable
from typing import Any

from streams.avro_schema import (
    _DATETIME_UNITS,
    _PRIMITIVES,
    _default,
    _fullname,
    _kind,
    _Names,
)
from streams.avro_source import _Source, _UnsupportedError
from streams.avro_wire import HEADER_SIZE, DecodedEvent


class _BadBodyError(Exception):
    """Raised by compiled readers for bytes that are not a valid body."""


class _EndError(Exception):
    """Raised by compiled readers when the body does not end where the message ends."""

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.pos = pos


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    b = data[pos]
    pos += 1
    n = b & 0x7F
    shift = 7
    while b & 0x80:
        if shift > 63:
            raise _BadBodyError("varint longer than 10 bytes")
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
    return (n >> 1) ^ -(n & 1), pos


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The unsigned varint (zigzag not undone) at ``pos``."""
    n, pos = _read_long(data, pos)
    return (n << 1) ^ (n >> 63), pos


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    n, pos = _read_long(data, pos)
    if n < 0:
        raise _BadBodyError(f"negative length {n}")
    return n, pos


_U16X3 = struct.Struct("<HHH")
_unpack_u16x3 = _U16X3.unpack_from
# two varint bytes (a little-endian u16) -> their 14 bits, when both bytes continue (_MORE) or
# when the second ends the varint (_LAST); None for any other u16
_U16_MORE = tuple((u & 0x7F) | ((u >> 8) & 0x7F) << 7 if u & 0x8080 == 0x8080 else None
                  for u in range(1 << 16))
# _U16_MORE of the first two bytes of a non-negative zigzag varint, halved (zigzag undone)
_U16_EVEN = tuple(None if z is None or z & 1 else z >> 1 for z in _U16_MORE)
_U16_LAST = tuple((u & 0x7F) | ((u >> 8) & 0x7F) << 7 if u & 0x8080 == 0x0080 else None
                  for u in range(1 << 16))


_ONE_BYTE = tuple((b >> 1) ^ -(b & 1) for b in range(128))  # zigzag value of a 1-byte varint
# 1-byte length b of a string or bytes value -> where the value ends: pos + _END0[b] when b is at
# pos, pos + _END1[b] when it is at pos + 1 (after a union index); None for a negative length
_END0 = tuple(None if b & 1 else (b >> 1) + 1 for b in range(128))
_END1 = tuple(None if b & 1 else (b >> 1) + 2 for b in range(128))


def _shape(t: Any, ns: str | None, names: _Names, seen: frozenset[str] = frozenset()) -> Any:
    """What decides how a type is read (docs, defaults and other attributes left out)."""
    t, ns = names.deref(t, ns)
    kind, _ = _kind(t)
    if kind == "union":
        return ("union", tuple(_shape(b, ns, names, seen) for b in t))
    if kind in _PRIMITIVES:
        return kind
    if kind in ("record", "enum", "fixed"):
        full = _fullname(t["name"], t.get("namespace", ns))
        if full in seen:
            return ("ref", full)
        seen = seen | {full}
        if kind == "enum":
            return ("enum", full, tuple(t["symbols"]))
        if kind == "fixed":
            return ("fixed", full, t["size"])
        return ("record", full, tuple((f["name"], _shape(f["type"], ns, names, seen))
                                      for f in t["fields"]))
    if kind == "array":
        return ("array", _shape(t["items"], ns, names, seen))
    return ("map", _shape(t["values"], ns, names, seen))


# what generated readers may call, besides the constants each compiler adds
_ENV: dict[str, Any] = {
    "_read_long": _read_long, "_read_length": _read_length, "_read_varint": _read_varint,
    "_ONE_BYTE": _ONE_BYTE, "_END0": _END0, "_END1": _END1, "_unpack_u16x3": _unpack_u16x3,
    "_U16_MORE": _U16_MORE, "_U16_EVEN": _U16_EVEN, "_U16_LAST": _U16_LAST,
    "_StructError": struct.error,
    "_BadBodyError": _BadBodyError, "_EndError": _EndError, "_deepcopy": copy.deepcopy,
    # DecodedEvent(...) runs a Python-level __new__: twice as slow as tuple.__new__
    "_new_event": tuple.__new__, "_DecodedEvent": DecodedEvent,
    "_unpack_d": struct.Struct("<d").unpack_from, "_unpack_f": struct.Struct("<f").unpack_from,
}


class _ReaderCompiler:
    """Compiles a writer schema into ``read(data, pos) -> (record, pos)``.

    With a different reader schema it handles the evolution our compatibility rule allows
    cheaply: fields added with a default, fields removed, fields reordered, every common field of
    the same type. Anything else (promotions, enum changes) raises :class:`_UnsupportedError` and
    fastavro resolves it.
    """

    def __init__(self, names: _Names) -> None:
        self.names = names
        self.src = _Source(_ENV)
        self.records: dict[str, str] = {}

    def compile(self, writer: dict[str, Any], reader: dict[str, Any] | None, label: str,
                event: tuple[str, int], *, columns: bool = False) -> Callable[..., Any]:
        """``entry(framed message) -> DecodedEvent(*event with the record)``; with ``columns``,
        ``entry(framed messages) -> [values of each reader field]`` (the reader's order)."""
        self.record(writer, None, reader, event=event, columns=columns)
        return self.src.build("_entry", label)

    def record(self, t: dict[str, Any], ns: str | None, reader: dict[str, Any] | None = None,
               event: tuple[str, int] | None = None, columns: bool = False) -> str:
        t, inner = self.names.deref(t, ns)
        full = _fullname(t["name"], t.get("namespace", ns))
        if event is None and full in self.records:
            return self.records[full]
        fn = f"_r{len(self.records)}"
        depth = 1
        if event is None:
            self.records[full] = fn
            lines = [f"def {fn}(data, pos):"]
        elif columns:  # every message of the list, each from its header to exactly its end
            names = [f["name"] for f in (reader or t)["fields"]]
            lines = ["def _entry(messages):"]
            lines += [f"    c{i} = []" for i in range(len(names))]
            lines += ["    for data in messages:", f"        pos = {HEADER_SIZE}"]
            depth = 2
        else:  # the message itself: start after the header, end exactly at its end
            lines = ["def _entry(data):", f"    pos = {HEADER_SIZE}"]
        values: dict[str, str] = {}
        for f in t["fields"]:
            v = values[f["name"]] = self.src.tmp()
            lines += self.value(f["type"], inner, v, depth)
        if reader is None:
            out = [(f["name"], values[f["name"]]) for f in t["fields"]]
        else:
            out = self.resolve(t, inner, reader, values)
        record = "{" + ", ".join(f"{name!r}: {expr}" for name, expr in out) + "}"
        if event is None:
            lines.append(f"    return {record}, pos")
        elif columns:
            lines.append("        if pos != len(data): raise _EndError(pos)")
            lines += [f"        c{i}.append({expr})" for i, (_, expr) in enumerate(out)]
            lines.append(f"    return [{', '.join(f'c{i}' for i in range(len(out)))}]")
        else:
            lines += [
                "    if pos != len(data): raise _EndError(pos)",
                f"    return _new_event(_DecodedEvent, ({event[0]!r}, {record}, {event[1]}))",
            ]
        self.src.functions.append("\n".join(lines))
        return fn

    def resolve(self, writer: dict[str, Any], ns: str | None, reader: dict[str, Any],
                values: dict[str, str]) -> list[tuple[str, str]]:
        """``(field name, expression)`` of every reader field, in the reader's order."""
        rnames = _Names(reader)
        rfull = _fullname(reader["name"], reader.get("namespace"))
        rns = rfull.rpartition(".")[0] or None
        if rfull != _fullname(writer["name"], writer.get("namespace", ns)):
            raise _UnsupportedError("record renamed")
        wfields = {f["name"]: f for f in writer["fields"]}
        out = []
        for f in reader["fields"]:
            name = f["name"]
            if name in wfields:
                if _shape(f["type"], rns, rnames) != _shape(wfields[name]["type"], ns, self.names):
                    raise _UnsupportedError(f"field {name} changed type")
                out.append((name, values[name]))
            elif "default" in f:
                value = _default(f["type"], f["default"], rnames, rns)
                const = self.src.const(value)
                mutable = isinstance(value, (list, dict))  # each record gets its own copy
                out.append((name, f"_deepcopy({const})" if mutable else const))
            else:
                raise _UnsupportedError(f"field {name} added without default")
        return out

    def read_long(self, v: str, depth: int, timestamp: bool, skip: int = 0) -> list[str]:
        """Inline reads of the common varint lengths (a call and a loop cost more than this),
        starting ``skip`` bytes after ``pos``."""
        pad = "    " * depth
        a, b, c, d = self.src.tmp(), self.src.tmp(), self.src.tmp(), self.src.tmp()
        at = [f"pos + {skip + i}" if skip + i else "pos" for i in range(4)]
        if timestamp:  # 6 bytes, read as three little-endian u16 looked up in tables
            # (a table gives None for a u16 that is not part of a 6-byte varint, _U16_EVEN also
            # for a negative value, an odd zigzag; both go to _read_long. A non-negative zigzag
            # is undone by halving: _U16_EVEN is halved, the other two shift one bit less)
            return [
                f"{pad}try:",
                f"{pad}    {a}, {b}, {c} = _unpack_u16x3(data, {at[0]})",
                f"{pad}    {v} = _U16_EVEN[{a}] | _U16_MORE[{b}] << 13 | _U16_LAST[{c}] << 27",
                f"{pad}    pos += {skip + 6}",
                f"{pad}except (TypeError, _StructError):",
                f"{pad}    {v}, pos = _read_long(data, {at[0]})",
            ]
        return [
            f"{pad}{a} = data[{at[0]}]",
            f"{pad}if {a} < 128: {v} = _ONE_BYTE[{a}]; pos += {skip + 1}",
            f"{pad}else:",
            f"{pad}    {b} = data[{at[1]}]",
            f"{pad}    if {b} < 128: {v} = ({a} & 127) | {b} << 7; pos += {skip + 2}",
            f"{pad}    else:",
            f"{pad}        {c} = data[{at[2]}]",
            f"{pad}        if {c} < 128:",
            f"{pad}            {v} = ({a} & 127) | ({b} & 127) << 7 | {c} << 14; "
            f"pos += {skip + 3}",
            f"{pad}        else:",
            f"{pad}            {d} = data[{at[3]}]",
            f"{pad}            if {d} < 128:",
            f"{pad}                {v} = ({a} & 127) | ({b} & 127) << 7 | ({c} & 127) << 14 "
            f"| {d} << 21; pos += {skip + 4}",
            f"{pad}            else: {v}, pos = _read_varint(data, {at[0]})",
            f"{pad}    {v} = ({v} >> 1) ^ -({v} & 1)",
        ]

    def value(self, t: Any, ns: str | None, v: str, depth: int, skip: int = 0) -> list[str]:
        """Lines reading a ``t`` into ``v``; it starts ``skip`` bytes after ``pos``."""
        t, ns = self.names.deref(t, ns)
        kind, logical = _kind(t)
        pad = "    " * depth
        small_enum = kind == "enum" and len(t["symbols"]) <= 64
        if skip and kind not in ("string", "bytes", "boolean", "float", "double", "int",
                                 "long") and not small_enum:
            return [f"{pad}pos += {skip}", *self.value(t, ns, v, depth)]
        at = f"pos + {skip}" if skip else "pos"
        if kind == "null":
            return [f"{pad}{v} = None"]
        if kind == "boolean":
            table = self.src.const({0: False, 1: True})
            return [f"{pad}{v} = {table}[data[{at}]]", f"{pad}pos += {skip + 1}"]
        if kind in ("int", "long"):
            return self.read_long(v, depth, logical in _DATETIME_UNITS, skip)
        if kind in ("float", "double"):
            size, unpack = (4, "_unpack_f") if kind == "float" else (8, "_unpack_d")
            return [f"{pad}{v} = {unpack}(data, {at})[0]", f"{pad}pos += {skip + size}"]
        if kind in ("string", "bytes"):
            # one slice whose end also moves pos (the walrus): fewer steps than pos += n after
            if skip > 1:
                return [f"{pad}pos += {skip}", *self.value(t, ns, v, depth)]
            n, decode = self.src.tmp(), ".decode()" if kind == "string" else ""
            return [
                f"{pad}{n} = data[{at}]",  # a negative 1-byte length makes pos + None fail
                f"{pad}if {n} < 128: {v} = data[pos + {skip + 1}:(pos := pos + _END{skip}[{n}])]"
                f"{decode}",
                f"{pad}else:",
                f"{pad}    {n}, pos = _read_length(data, {at})",
                f"{pad}    {v} = data[pos:(pos := pos + {n})]{decode}",
            ]
        if kind == "fixed":
            return [f"{pad}{v} = data[pos:pos + {t['size']}]", f"{pad}pos += {t['size']}"]
        if kind == "enum":
            if small_enum:  # the index is one byte: look the byte up
                table = self.src.const({i << 1: s for i, s in enumerate(t["symbols"])})
                return [f"{pad}{v} = {table}[data[{at}]]", f"{pad}pos += {skip + 1}"]
            table = self.src.const(dict(enumerate(t["symbols"])))
            i = self.src.tmp()
            return [f"{pad}{i}, pos = _read_long(data, pos)", f"{pad}{v} = {table}[{i}]"]
        if kind == "union":
            if len(t) > 64:
                raise _UnsupportedError("union of more than 64 branches")
            if len(t) == 2 and "null" in t:  # optional value: test its branch first
                i, index = self.src.tmp(), 2 if t[0] == "null" else 0
                return [
                    f"{pad}{i} = data[pos]",
                    f"{pad}if {i} == {index}:",
                    *self.value(t[index >> 1], ns, v, depth + 1, skip=1),
                    f"{pad}elif {i} == {2 - index}: {v} = None; pos += 1",
                    f"{pad}else: raise _BadBodyError('union branch out of range')",
                ]
            i = self.src.tmp()
            lines = [f"{pad}{i} = data[pos]", f"{pad}pos += 1"]
            for index, branch in enumerate(t):
                lines.append(f"{pad}{'if' if index == 0 else 'elif'} {i} == {index << 1}:")
                lines += self.value(branch, ns, v, depth + 1)
            lines.append(f"{pad}else: raise _BadBodyError('union branch out of range')")
            return lines
        if kind in ("array", "map"):
            n, item, key = self.src.tmp(), self.src.tmp(), self.src.tmp()
            lines = [
                f"{pad}{v} = {'[]' if kind == 'array' else '{}'}",
                f"{pad}while True:",
                f"{pad}    {n}, pos = _read_long(data, pos)",
                f"{pad}    if {n} == 0: break",
                f"{pad}    if {n} < 0:",  # a negative count is followed by the block's size
                f"{pad}        {n} = -{n}",
                f"{pad}        _, pos = _read_long(data, pos)",
                f"{pad}    if {n} > len(data): raise _BadBodyError('block count exceeds message')",
                f"{pad}    for _ in range({n}):",
            ]
            if kind == "array":
                lines += self.value(t["items"], ns, item, depth + 2)
                lines.append(f"{pad}        {v}.append({item})")
            else:
                lines += self.value("string", ns, key, depth + 2)
                lines += self.value(t["values"], ns, item, depth + 2)
                lines.append(f"{pad}        {v}[{key}] = {item}")
            return lines
        if kind == "record":
            return [f"{pad}{v}, pos = {self.record(t, ns)}(data, pos)"]
        raise _UnsupportedError(f"type {kind!r}")
