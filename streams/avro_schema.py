"""Reading Avro schema dicts: named-type resolution, kinds, descriptions and defaults (shared by
the compiled writers and readers and by :func:`streams.avro_explain.explain`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cxstream.errors import SchemaError

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})
_INT_RANGE = (-(1 << 31), (1 << 31) - 1)
_LONG_RANGE = (-(1 << 63), (1 << 63) - 1)
_FLOAT_MAX = 3.4028234663852886e38
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_DATETIME_UNITS = {"timestamp-millis": timedelta(milliseconds=1),
                   "timestamp-micros": timedelta(microseconds=1)}


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
