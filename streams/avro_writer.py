"""Compiled writers: generates, per record schema, Python that checks a record's fields
(types, ranges, required and unknown fields) and/or writes their Avro binary encoding."""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from streams.avro_schema import (
    _DATETIME_UNITS,
    _EPOCH,
    _EPOCH_NAIVE,
    _INT_RANGE,
    _LONG_RANGE,
    _default,
    _fullname,
    _is_int,
    _kind,
    _Names,
)
from streams.avro_source import _Source, _UnsupportedError


class _InvalidError(Exception):
    """Raised by compiled checks; the message is worded afterwards by
    :func:`streams.avro_explain.explain`."""


_SMALL = 1 << 12  # lengths and longs below this are written from a precomputed table


def _varint(u: int) -> bytes:
    out = bytearray()
    while u > 0x7F:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)
    return bytes(out)


_pack_u16_u8 = struct.Struct("<HB").pack
_pack_u16x2 = struct.Struct("<HH").pack
_pack_u16x3 = struct.Struct("<HHH").pack
# 14 bits -> the two varint bytes holding them (as a little-endian u16, continuation bits unset)
_TO_U16 = tuple((c & 0x7F) | (c >> 7) << 8 for c in range(1 << 14))
_ZZ = tuple(_varint(i << 1) for i in range(_SMALL))  # zigzag varint of non-negative i
_V14 = tuple(_varint(z) for z in range(1 << 14))  # varint of every 14-bit (2-byte) value


@functools.cache
def _zz_after(prefix: bytes) -> tuple[bytes, ...]:
    """:data:`_ZZ` with ``prefix`` (a union branch index) before every entry."""
    return tuple(prefix + z for z in _ZZ)


def _long(n: int) -> bytes:
    """Zigzag varint of a long; raises :class:`_InvalidError` outside the 64-bit range."""
    z = (n << 1) ^ (n >> 63)
    # table lookups and one struct.pack instead of a byte loop: 2-3x faster for 2-6 bytes
    if z < 1 << 14:
        if z < 0:
            raise _InvalidError
        return _V14[z]
    if z < 1 << 21:
        return _pack_u16_u8(_TO_U16[z & 0x3FFF] | 0x8080, z >> 14)
    if z < 1 << 28:
        return _pack_u16x2(_TO_U16[z & 0x3FFF] | 0x8080, _TO_U16[z >> 14] | 0x80)
    if 1 << 35 <= z < 1 << 42:  # 6 bytes: every epoch-millisecond timestamp from 1971 to 2109
        return _pack_u16x3(
            _TO_U16[z & 0x3FFF] | 0x8080, _TO_U16[(z >> 14) & 0x3FFF] | 0x8080,
            _TO_U16[z >> 28] | 0x80,
        )
    if z >> 64:
        raise _InvalidError
    return _varint(z)


def _timestamp_value(unit: timedelta) -> Callable[[Any], int]:
    """The long a timestamp field takes from a value that is not exactly an int."""

    def convert(value: Any) -> int:
        if isinstance(value, datetime):
            converted: int = (value - (_EPOCH if value.tzinfo else _EPOCH_NAIVE)) // unit
            return converted
        if _is_int(value):
            return int(value)
        raise _InvalidError

    return convert


# Python types that pick a union branch; branches whose sets overlap are ambiguous
_CATEGORIES = {
    "null": {"none"}, "boolean": {"bool"}, "int": {"int"}, "long": {"int"},
    "float": {"int", "float"}, "double": {"int", "float"}, "string": {"str"}, "enum": {"str"},
    "bytes": {"bytes"}, "fixed": {"bytes"}, "array": {"list"}, "map": {"mapping"},
    "record": {"mapping"},
}
_TESTS = {
    "null": "{v} is None",
    "boolean": "({v} is True or {v} is False)",
    "int": "(type({v}) is int or _is_int({v}))",
    "float": "(type({v}) is float or isinstance({v}, float) or _is_int({v}))",
    "string": "isinstance({v}, str)",
    "bytes": "isinstance({v}, (bytes, bytearray))",
    "list": "isinstance({v}, (list, tuple))",
    "mapping": "(type({v}) is dict or isinstance({v}, Mapping))",
}
_BRANCH_TESTS = {
    "null": _TESTS["null"], "boolean": _TESTS["boolean"], "int": _TESTS["int"],
    "long": _TESTS["int"], "float": _TESTS["float"], "double": _TESTS["float"],
    "string": _TESTS["string"], "enum": _TESTS["string"], "bytes": _TESTS["bytes"],
    "fixed": _TESTS["bytes"], "array": _TESTS["list"], "map": _TESTS["mapping"],
    "record": _TESTS["mapping"],
}


# what generated writers may call, besides the constants each compiler adds
_ENV: dict[str, Any] = {
    "_InvalidError": _InvalidError, "_ZZ": _ZZ, "_long": _long, "_is_int": _is_int,
    "Mapping": Mapping, "datetime": datetime, "_pack_d": struct.Struct("<d").pack,
    "_pack_f": struct.Struct("<f").pack, "_pack_u16x3": _pack_u16x3, "_TO_U16": _TO_U16,
}


class _WriterCompiler:
    """Compiles a record schema into ``write(record, buf: bytearray) -> None``.

    ``check`` adds the type, range and required-field checks (raising :class:`_InvalidError`, or
    letting KeyError/TypeError escape: the codec treats any exception as invalid); ``emit`` adds
    the writing. check without emit is the validator; emit without check is the raw encoder the
    benchmark compares against.
    """

    def __init__(self, names: _Names, *, check: bool, emit: bool) -> None:
        self.names = names
        self.check = check
        self.emit = emit
        self.src = _Source(_ENV)
        self.records: dict[str, str] = {}

    def compile(self, root: dict[str, Any], label: str, header: bytes) -> Callable[..., Any]:
        """``entry(record) -> bytearray`` (header + body), or ``-> None`` when not emitting."""
        self.record(root, None, header=header)
        return self.src.build("_entry", label)

    def record(self, t: dict[str, Any], ns: str | None, header: bytes | None = None) -> str:
        t, inner = self.names.deref(t, ns)
        full = _fullname(t["name"], t.get("namespace", ns))
        if header is None and full in self.records:
            return self.records[full]
        fn = f"_w{len(self.records)}"
        if header is None:
            self.records[full] = fn
            lines = [f"def {fn}(rec, buf):"]
        else:
            lines = ["def _entry(rec):", f"    buf = bytearray({header!r})" if self.emit
                     else "    buf = None"]
        if self.check:
            known = self.src.const(frozenset(f["name"] for f in t["fields"]))
            lines.append(f"    if not rec.keys() <= {known}: raise _InvalidError")
        for f in t["fields"]:
            v = self.src.tmp()
            if "default" in f:
                default = self.src.const(_default(f["type"], f["default"], self.names, inner))
                lines.append(f"    {v} = rec.get({f['name']!r}, {default})")
            else:  # a missing required field raises KeyError
                lines.append(f"    {v} = rec[{f['name']!r}]")
            lines += self.value(f["type"], inner, v, 1)
        if header is not None:
            lines.append("    return buf")
        self.src.functions.append("\n".join(lines))
        return fn

    def value(self, t: Any, ns: str | None, v: str, depth: int, known: bool = False,
              prefix: bytes = b"") -> list[str]:
        """Lines checking and/or writing ``v``; ``known``: a union test already checked its type;
        ``prefix``: bytes to write first (a union's branch index), folded into the value's own."""
        t, ns = self.names.deref(t, ns)
        kind, logical = _kind(t)
        lines: list[str] = []
        check, emit = self.check and not known, self.emit

        def add(*text: str) -> None:
            lines.extend("    " * depth + line for line in text)

        if prefix and emit and kind not in ("boolean", "string", "bytes", "enum") and not (
                kind in ("int", "long") and logical not in _DATETIME_UNITS):
            add(f"buf += {prefix!r}")
            prefix = b""
        zz = self.src.const(_zz_after(prefix)) if prefix else "_ZZ"
        slow = f"{prefix!r} + _long" if prefix else "_long"  # beyond the table
        if kind == "union":
            return self.union(t, ns, v, depth)
        if kind == "null":
            if check:
                add(f"if {v} is not None: raise _InvalidError")
        elif kind == "boolean":
            if check:
                add(f"if {v} is not True and {v} is not False: raise _InvalidError")
            if emit:
                on, off = prefix + b"\x01", prefix + b"\x00"
                add(f"buf += {on!r} if {v} else {off!r}")
        elif kind in ("int", "long"):
            low, high = _INT_RANGE if kind == "int" else _LONG_RANGE
            if logical in _DATETIME_UNITS:
                convert = self.src.const(_timestamp_value(_DATETIME_UNITS[logical]))
                add(f"if type({v}) is not int: {v} = {convert}({v})")
            elif check:
                add(f"if type({v}) is not int and not _is_int({v}): raise _InvalidError")
            if self.check and (kind == "int" or not emit):  # _long checks the long range
                add(f"if not {low} <= {v} <= {high}: raise _InvalidError")
            if emit and logical in _DATETIME_UNITS:  # inline the 6-byte case of _long
                z = self.src.tmp()
                add(
                    f"{z} = ({v} << 1) ^ ({v} >> 63)",
                    f"if {1 << 35} <= {z} < {1 << 42}: buf += _pack_u16x3(_TO_U16[{z} & 16383] "
                    f"| 32896, _TO_U16[{z} >> 14 & 16383] | 32896, _TO_U16[{z} >> 28] | 128)",
                    f"else: buf += _long({v})",
                )
            elif emit:
                add(f"buf += {zz}[{v}] if 0 <= {v} < {_SMALL} else {slow}({v})")
        elif kind in ("float", "double"):
            if check:
                add(f"if type({v}) is not float and not {_TESTS['float'].format(v=v)}: "
                    "raise _InvalidError")
            if emit:
                add(f"buf += {'_pack_f' if kind == 'float' else '_pack_d'}({v})")
            elif self.check and kind == "float":
                add(f"_pack_f({v})")  # raises OverflowError out of the 32-bit range
        elif kind in ("string", "bytes"):
            if check:
                add(f"if not {_TESTS[kind].format(v=v)}: raise _InvalidError")
            if emit:
                b, n = self.src.tmp(), self.src.tmp()
                add(
                    f"{b} = {v}.encode()" if kind == "string" else f"{b} = {v}",
                    f"{n} = len({b})",
                    f"buf += {zz}[{n}] if {n} < {_SMALL} else {slow}({n})",
                    f"buf += {b}",
                )
            elif self.check and kind == "string":
                add(f"{v}.encode()")  # lone surrogates are not UTF-8
        elif kind == "fixed":
            if self.check:
                add(f"if not isinstance({v}, (bytes, bytearray)) or len({v}) != {t['size']}: "
                    "raise _InvalidError")
            if emit:
                add(f"buf += {v}")
        elif kind == "enum":
            table = self.src.const({s: prefix + _ZZ[i] for i, s in enumerate(t["symbols"])})
            if emit:  # .get of an unhashable value raises TypeError: invalid as well
                i = self.src.tmp()
                add(f"{i} = {table}.get({v})")
                if self.check:
                    add(f"if {i} is None: raise _InvalidError")
                add(f"buf += {i}")
            elif self.check:
                add(f"if {v} not in {table}: raise _InvalidError")
        elif kind in ("array", "map"):
            item, key = self.src.tmp(), self.src.tmp()
            if check:
                test = _TESTS["list" if kind == "array" else "mapping"]
                add(f"if not {test.format(v=v)}: raise _InvalidError")
            if emit:
                add(f"if {v}:", f"    buf += _ZZ[len({v})] if len({v}) < {_SMALL} "
                    f"else _long(len({v}))")
            if kind == "array":
                add(f"for {item} in {v}:")
            else:
                add(f"for {key}, {item} in {v}.items():")
                lines += self.value("string", ns, key, depth + 1)
            lines += self.value(t["items" if kind == "array" else "values"], ns, item, depth + 1)
            if lines[-1].rstrip().endswith(":"):
                add("    pass")
            if emit:
                add("buf += b'\\x00'")
        elif kind == "record":
            fn = self.record(t, ns)
            if check:
                add(f"if not {_TESTS['mapping'].format(v=v)}: raise _InvalidError")
            add(f"{fn}({v}, buf)")
        else:
            raise _UnsupportedError(f"type {kind!r}")
        return lines

    def union(self, branches: list[Any], ns: str | None, v: str, depth: int) -> list[str]:
        seen: set[str] = set()
        lines: list[str] = []
        pad = "    " * depth
        for index, branch in enumerate(branches):
            kind, logical = _kind(self.names.deref(branch, ns)[0])
            categories = set(_CATEGORIES[kind])
            tests = [_BRANCH_TESTS[kind].format(v=v)]
            if kind in ("int", "long") and logical in _DATETIME_UNITS:
                categories.add("datetime")
                tests.append(f"isinstance({v}, datetime)")
            if categories & seen:  # a value's Python type would not pick one branch
                raise _UnsupportedError(f"union {branches!r}: branches overlap")
            seen |= categories
            lines.append(f"{pad}{'if' if index == 0 else 'elif'} {' or '.join(tests)}:")
            body = self.value(branch, ns, v, depth + 1, known=True, prefix=_ZZ[index])
            lines += body or [f"{pad}    pass"]
        if self.check:
            lines.append(f"{pad}else: raise _InvalidError")
        return lines

