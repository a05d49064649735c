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
"""

from __future__ import annotations

import copy
import functools
import io
import struct
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import fastavro

from cxstream.errors import DecodeError, SchemaError, ValidationError
from schemas import SchemaVersion
from streams.registry import SchemaRegistry

if TYPE_CHECKING:
    from cxstream.settings import Settings

MAGIC = 0
HEADER_SIZE = 5
_HEADER = struct.Struct(">bI")

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})
_INT_RANGE = (-(1 << 31), (1 << 31) - 1)
_LONG_RANGE = (-(1 << 63), (1 << 63) - 1)
_FLOAT_MAX = 3.4028234663852886e38
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_DATETIME_UNITS = {"timestamp-millis": timedelta(milliseconds=1),
                   "timestamp-micros": timedelta(microseconds=1)}


class DecodedEvent(NamedTuple):
    name: str
    record: dict[str, Any]
    schema_id: int


# --------------------------------------------------------------------------- schema helpers


def _fullname(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


class _Names:
    """The named types of one schema by full name, as Avro resolves references."""

    def __init__(self, root: Any) -> None:
        self.types: dict[str, dict[str, Any]] = {}
        self._collect(root, None)

    def _collect(self, t: Any, ns: str | None) -> None:
        if isinstance(t, list):
            for branch in t:
                self._collect(branch, ns)
        elif isinstance(t, dict):
            kind = t["type"]
            if kind in _NAMED:
                full = _fullname(t["name"], t.get("namespace", ns))
                self.types[full] = t
                inner = full.rpartition(".")[0] or None
                for f in t.get("fields", ()):
                    self._collect(f["type"], inner)
            elif kind == "array":
                self._collect(t["items"], ns)
            elif kind == "map":
                self._collect(t["values"], ns)

    def deref(self, t: Any, ns: str | None) -> tuple[Any, str | None]:
        """The definition behind a type and the namespace that applies inside it."""
        if isinstance(t, str) and t not in _PRIMITIVES:
            found = self.types.get(_fullname(t, ns)) or self.types.get(t)
            if found is None:
                raise SchemaError(f"unknown type name {t!r}")
            t = found
        if isinstance(t, dict) and t["type"] in _NAMED:
            full = _fullname(t["name"], t.get("namespace", ns))
            return t, full.rpartition(".")[0] or None
        return t, ns


def _kind(t: Any) -> tuple[str, str | None]:
    """(kind, logicalType) of a dereferenced type: a primitive name, a complex kind or union."""
    if isinstance(t, str):
        return t, None
    if isinstance(t, list):
        return "union", None
    kind = t["type"]
    if kind == "error":
        kind = "record"
    if isinstance(kind, (dict, list)):  # {"type": {...}} wrapper
        return _kind(kind)
    return kind, t.get("logicalType")


def _describe(t: Any, names: _Names, ns: str | None) -> str:
    t, ns = names.deref(t, ns)
    kind, logical = _kind(t)
    if kind == "union":
        return " or ".join(_describe(b, names, ns) for b in t)
    if kind in ("record", "enum", "fixed"):
        return f"{kind} {t['name']}"
    if kind == "array":
        return f"array of {_describe(t['items'], names, ns)}"
    if kind == "map":
        return f"map of {_describe(t['values'], names, ns)}"
    return f"{kind} ({logical})" if logical else kind


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"


def _default(t: Any, value: Any, names: _Names, ns: str | None) -> Any:
    """A JSON default as the Python value the writer takes (bytes defaults are latin-1 text)."""
    t, ns = names.deref(t, ns)
    kind, _ = _kind(t)
    if kind == "union":
        return _default(t[0], value, names, ns)
    if kind in ("bytes", "fixed") and isinstance(value, str):
        return value.encode("latin-1")
    if kind == "record" and isinstance(value, dict):
        return {
            f["name"]: _default(f["type"], value.get(f["name"], f.get("default")), names, ns)
            for f in t["fields"]
        }
    if kind == "array" and isinstance(value, list):
        return [_default(t["items"], v, names, ns) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: _default(t["values"], v, names, ns) for k, v in value.items()}
    return value


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# --------------------------------------------------------------------------- error messages


def explain(definition: Mapping[str, Any], record: Any) -> tuple[str, str] | None:
    """Where and why ``record`` does not match ``definition``: (dotted field path, message).

    The slow, plain reading of the rules that the compiled checks implement quickly; used only
    to word the error once a check has failed. ``None`` when the record is valid.
    """
    names = _Names(definition)
    return _explain(definition, None, names, record, "")


def _join(path: str, part: object) -> str:
    return f"{path}.{part}" if path else str(part)


def _explain(t: Any, ns: str | None, names: _Names, v: Any, path: str) -> tuple[str, str] | None:
    t, ns = names.deref(t, ns)
    kind, logical = _kind(t)
    expected = _describe(t, names, ns)
    bad = (path, f"expected {expected}, got {_show(v)}")
    if kind == "union":
        if not any(_explain(b, ns, names, v, path) is None for b in t):
            others = [b for b in t if b != "null"]
            if v is not None and len(others) == 1:  # an optional value: say what is wrong inside
                found = _explain(others[0], ns, names, v, path)
                mismatch = f"expected {_describe(others[0], names, ns)}, got "
                if found is not None and not (found[0] == path and found[1].startswith(mismatch)):
                    return found
            return bad
        return None
    if kind == "null":
        return None if v is None else bad
    if kind == "boolean":
        return None if isinstance(v, bool) else bad
    if kind in ("int", "long"):
        if logical in _DATETIME_UNITS and isinstance(v, datetime):
            v = (v - (_EPOCH if v.tzinfo else _EPOCH_NAIVE)) // _DATETIME_UNITS[logical]
        if not _is_int(v):
            return bad
        low, high = _INT_RANGE if kind == "int" else _LONG_RANGE
        if not low <= v <= high:
            return path, f"expected {expected} in [{low}, {high}], got {v}"
        return None
    if kind in ("float", "double"):
        if not (_is_int(v) or isinstance(v, float)):
            return bad
        if kind == "float" and abs(v) > _FLOAT_MAX and abs(v) != float("inf"):
            return path, f"expected {expected} (32-bit), got {v!r}, out of range"
        if kind == "double" and _is_int(v) and abs(v) > 1.7976931348623157e308:
            return path, f"expected {expected}, got {v!r}, out of range"
        return None
    if kind == "string":
        if not isinstance(v, str):
            return bad
        try:
            v.encode()
        except UnicodeEncodeError:
            return path, f"string is not encodable as UTF-8: {v!r:.80}"
        return None
    if kind == "bytes":
        return None if isinstance(v, (bytes, bytearray)) else bad
    if kind == "fixed":
        if isinstance(v, (bytes, bytearray)) and len(v) == t["size"]:
            return None
        return path, f"expected {expected} of {t['size']} bytes, got {_show(v)}"
    if kind == "enum":
        try:
            if v in t["symbols"] and isinstance(v, str):
                return None
        except TypeError:
            pass
        return path, f"expected one of {', '.join(t['symbols'])} ({expected}), got {_show(v)}"
    if kind == "array":
        if not isinstance(v, (list, tuple)):
            return bad
        for i, item in enumerate(v):
            found = _explain(t["items"], ns, names, item, _join(path, i))
            if found:
                return found
        return None
    if kind == "map":
        if not isinstance(v, Mapping):
            return bad
        for key, item in v.items():
            if not isinstance(key, str):
                return _join(path, key), f"map keys must be strings, got {_show(key)}"
            found = _explain(t["values"], ns, names, item, _join(path, key))
            if found:
                return found
        return None
    if kind == "record":
        if not isinstance(v, Mapping):
            return path, f"expected a mapping for {expected}, got {_show(v)}"
        known = [f["name"] for f in t["fields"]]
        for key in v:
            if key not in known:
                return _join(path, key), f"field is not in {expected}; fields: {', '.join(known)}"
        for f in t["fields"]:
            if f["name"] not in v:
                if "default" in f:
                    continue
                return _join(path, f["name"]), "required field is missing (it has no default)"
            found = _explain(f["type"], ns, names, v[f["name"]], _join(path, f["name"]))
            if found:
                return found
        return None
    raise SchemaError(f"unsupported Avro type {kind!r}")


# --------------------------------------------------------------------------- compiled writers


class _InvalidError(Exception):
    """Raised by compiled checks; the message is worded afterwards by :func:`explain`."""


class _UnsupportedError(Exception):
    """The compiler declines this schema; fastavro is used for it instead."""


_MISSING = object()
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


class _Source:
    """Python source of generated functions and the constants they refer to."""

    def __init__(self) -> None:
        self.env: dict[str, Any] = {
            "_InvalidError": _InvalidError, "_MISSING": _MISSING, "_ZZ": _ZZ, "_long": _long,
            "_is_int": _is_int, "Mapping": Mapping, "datetime": datetime,
            "_pack_d": struct.Struct("<d").pack, "_pack_f": struct.Struct("<f").pack,
            "_read_long": _read_long, "_read_length": _read_length,
            "_read_varint": _read_varint, "_ONE_BYTE": _ONE_BYTE, "_HALF": _HALF,
            "_unpack_u16x3": _unpack_u16x3, "_pack_u16x3": _pack_u16x3, "_TO_U16": _TO_U16,
            "_U16_MORE": _U16_MORE, "_U16_LAST": _U16_LAST, "_StructError": struct.error,
            "_BadBodyError": _BadBodyError, "_EndError": _EndError, "_deepcopy": copy.deepcopy,
            "_new_event": tuple.__new__, "_DecodedEvent": DecodedEvent,
            "_unpack_d": struct.Struct("<d").unpack_from,
            "_unpack_f": struct.Struct("<f").unpack_from,
        }
        self.functions: list[str] = []
        self._count = 0

    def const(self, value: Any) -> str:
        name = f"_k{len(self.env)}"
        self.env[name] = value
        return name

    def tmp(self) -> str:
        self._count += 1
        return f"t{self._count}"

    def build(self, entry: str, label: str) -> Callable[..., Any]:
        code = compile("\n\n".join(self.functions), f"<cxstream avro {label}>", "exec")
        exec(code, self.env)
        function: Callable[..., Any] = self.env[entry]
        return function


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
        self.src = _Source()
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


# --------------------------------------------------------------------------- compiled readers


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
_U16_LAST = tuple((u & 0x7F) | ((u >> 8) & 0x7F) << 7 if u & 0x8080 == 0x0080 else None
                  for u in range(1 << 16))


_ONE_BYTE = tuple((b >> 1) ^ -(b & 1) for b in range(128))  # zigzag value of a 1-byte varint
_HALF = tuple(None if b & 1 else b >> 1 for b in range(128))  # 1-byte length; None if negative


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


class _ReaderCompiler:
    """Compiles a writer schema into ``read(data, pos) -> (record, pos)``.

    With a different reader schema it handles the evolution our compatibility rule allows
    cheaply: fields added with a default, fields removed, fields reordered, every common field of
    the same type. Anything else (promotions, enum changes) raises :class:`_UnsupportedError` and
    fastavro resolves it.
    """

    def __init__(self, names: _Names) -> None:
        self.names = names
        self.src = _Source()
        self.records: dict[str, str] = {}

    def compile(self, writer: dict[str, Any], reader: dict[str, Any] | None, label: str,
                event: tuple[str, int]) -> Callable[[bytes], DecodedEvent]:
        """``entry(framed message) -> DecodedEvent(*event with the record)``."""
        self.record(writer, None, reader, event=event)
        return self.src.build("_entry", label)

    def record(self, t: dict[str, Any], ns: str | None, reader: dict[str, Any] | None = None,
               event: tuple[str, int] | None = None) -> str:
        t, inner = self.names.deref(t, ns)
        full = _fullname(t["name"], t.get("namespace", ns))
        if event is None and full in self.records:
            return self.records[full]
        fn = f"_r{len(self.records)}"
        if event is None:
            self.records[full] = fn
            lines = [f"def {fn}(data, pos):"]
        else:  # the message itself: start after the header, end exactly at its end
            lines = ["def _entry(data):", f"    pos = {HEADER_SIZE}"]
        values: dict[str, str] = {}
        for f in t["fields"]:
            v = values[f["name"]] = self.src.tmp()
            lines += self.value(f["type"], inner, v, 1)
        if reader is None:
            out = [f"{f['name']!r}: {values[f['name']]}" for f in t["fields"]]
        else:
            out = self.resolve(t, inner, reader, values)
        record = f"{{{', '.join(out)}}}"
        if event is None:
            lines.append(f"    return {record}, pos")
        else:
            lines += [
                "    if pos != len(data): raise _EndError(pos)",
                f"    return _new_event(_DecodedEvent, ({event[0]!r}, {record}, {event[1]}))",
            ]
        self.src.functions.append("\n".join(lines))
        return fn

    def resolve(self, writer: dict[str, Any], ns: str | None, reader: dict[str, Any],
                values: dict[str, str]) -> list[str]:
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
                out.append(f"{name!r}: {values[name]}")
            elif "default" in f:
                value = _default(f["type"], f["default"], rnames, rns)
                const = self.src.const(value)
                mutable = isinstance(value, (list, dict))  # each record gets its own copy
                out.append(f"{name!r}: _deepcopy({const})" if mutable else f"{name!r}: {const}")
            else:
                raise _UnsupportedError(f"field {name} added without default")
        return out

    def read_long(self, v: str, depth: int, timestamp: bool) -> list[str]:
        """Inline reads of the common varint lengths (a call and a loop cost more than this)."""
        pad = "    " * depth
        a, b, c, d = self.src.tmp(), self.src.tmp(), self.src.tmp(), self.src.tmp()
        if timestamp:  # 6 bytes, read as three little-endian u16 looked up in tables
            return [  # (a table gives None for a u16 that is not part of a 6-byte varint)
                f"{pad}try:",
                f"{pad}    {a}, {b}, {c} = _unpack_u16x3(data, pos)",
                f"{pad}    {v} = _U16_MORE[{a}] | _U16_MORE[{b}] << 14 | _U16_LAST[{c}] << 28",
                f"{pad}    {v} = ({v} >> 1) ^ -({v} & 1); pos += 6",
                f"{pad}except (TypeError, _StructError):",
                f"{pad}    {v}, pos = _read_long(data, pos)",
            ]
        return [
            f"{pad}{a} = data[pos]",
            f"{pad}if {a} < 128: {v} = _ONE_BYTE[{a}]; pos += 1",
            f"{pad}else:",
            f"{pad}    {b} = data[pos + 1]",
            f"{pad}    if {b} < 128: {v} = ({a} & 127) | {b} << 7; pos += 2",
            f"{pad}    else:",
            f"{pad}        {c} = data[pos + 2]",
            f"{pad}        if {c} < 128:",
            f"{pad}            {v} = ({a} & 127) | ({b} & 127) << 7 | {c} << 14; pos += 3",
            f"{pad}        else:",
            f"{pad}            {d} = data[pos + 3]",
            f"{pad}            if {d} < 128:",
            f"{pad}                {v} = ({a} & 127) | ({b} & 127) << 7 | ({c} & 127) << 14 "
            f"| {d} << 21; pos += 4",
            f"{pad}            else: {v}, pos = _read_varint(data, pos)",
            f"{pad}    {v} = ({v} >> 1) ^ -({v} & 1)",
        ]

    def value(self, t: Any, ns: str | None, v: str, depth: int, skip: int = 0) -> list[str]:
        """Lines reading a ``t`` into ``v``; it starts ``skip`` bytes after ``pos``."""
        t, ns = self.names.deref(t, ns)
        kind, logical = _kind(t)
        pad = "    " * depth
        small_enum = kind == "enum" and len(t["symbols"]) <= 64
        if skip and kind not in ("string", "bytes", "boolean", "float", "double") \
                and not small_enum:
            return [f"{pad}pos += {skip}", *self.value(t, ns, v, depth)]
        at = f"pos + {skip}" if skip else "pos"
        if kind == "null":
            return [f"{pad}{v} = None"]
        if kind == "boolean":
            table = self.src.const({0: False, 1: True})
            return [f"{pad}{v} = {table}[data[{at}]]", f"{pad}pos += {skip + 1}"]
        if kind in ("int", "long"):
            return self.read_long(v, depth, logical in _DATETIME_UNITS)
        if kind in ("float", "double"):
            size, unpack = (4, "_unpack_f") if kind == "float" else (8, "_unpack_d")
            return [f"{pad}{v} = {unpack}(data, {at})[0]", f"{pad}pos += {skip + size}"]
        if kind in ("string", "bytes"):
            n = self.src.tmp()
            body = f"data[pos:pos + {n}]"
            return [
                f"{pad}{n} = data[{at}]",  # a negative 1-byte length makes pos + None fail
                f"{pad}if {n} < 128: {n} = _HALF[{n}]; pos += {skip + 1}",
                f"{pad}else: {n}, pos = _read_length(data, {at})",
                f"{pad}{v} = {body}.decode()" if kind == "string" else f"{pad}{v} = {body}",
                f"{pad}pos += {n}",
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


# --------------------------------------------------------------------------- plans


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
    """How to read messages written with one schema id, as the newest version of their type."""

    def __init__(self, writer: SchemaVersion, reader: SchemaVersion) -> None:
        self.writer = writer
        self.name = writer.name
        self.schema_id = writer.schema_id
        self.reader_id = reader.schema_id
        self.compiled = True
        label = f"{writer.name} v{writer.version} as v{reader.version}"
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

    def _fastavro_decode(self, data: bytes) -> DecodedEvent:
        buf = io.BytesIO(data)
        buf.seek(HEADER_SIZE)
        record = fastavro.schemaless_reader(buf, self._writer_schema, self._reader_schema)
        if buf.tell() != len(data):
            raise _EndError(buf.tell())
        return DecodedEvent(self.name, record, self.schema_id)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- codec


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
_new_event = tuple.__new__  # DecodedEvent(...) runs a Python-level __new__: twice as slow


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


__all__ = ["HEADER_SIZE", "MAGIC", "AvroCodec", "DecodedEvent", "build_codec", "explain"]
