"""Validation error messages: :func:`explain` says where and why a record does not match its
schema, a plain (slow) reading of the rules that the compiled checks implement quickly."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cxstream.errors import SchemaError
from streams.avro_schema import (
    _DATETIME_UNITS,
    _EPOCH,
    _EPOCH_NAIVE,
    _FLOAT_MAX,
    _INT_RANGE,
    _LONG_RANGE,
    _describe,
    _is_int,
    _kind,
    _Names,
    _show,
)


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


__all__ = ["explain"]
