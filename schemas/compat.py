"""Schema evolution rules, checked before a version is locked and by ``cxstream schemas check``.

Compatibility is BACKWARD_TRANSITIVE: version N must read data written by every earlier version
1..N-1, so consumers upgraded to the newest schema read the whole history of a topic. The
reader/writer check is Apache Avro's own (``avro.compatibility``), the reference
implementation; this module adds the project's conventions on top: docs on every field, the
envelope fields every event has, PII classes, and ids that are assigned once and never change.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import avro.errors
import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from cxstream.errors import SchemaError
from schemas.catalog import LOCK_FILE, SCHEMA_ROOT, SchemaCatalog, load_catalog, read_lock

COMPATIBILITY = "BACKWARD_TRANSITIVE"
PII_CLASSES = frozenset({"name", "email", "phone", "national_id", "free_text", "ip", "account"})


@dataclass(frozen=True)
class Problem:
    """One broken rule: which schema, which version (``None``: the schema as a whole), what."""

    schema: str
    version: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.schema} v{self.version}" if self.version is not None else self.schema
        return f"{where}: {self.message}"


def _parse(definition: Mapping[str, Any]) -> avro.schema.Schema:
    try:
        return avro.schema.parse(json.dumps(definition))
    except (avro.errors.SchemaParseException, avro.errors.AvroException, ValueError) as exc:
        raise SchemaError(f"invalid Avro schema: {exc}") from exc


def _where(definition: Mapping[str, Any], location: str) -> str:
    """Turn avro's ``/fields/3/type/symbols`` into ``field 'channel' (/fields/3/type/symbols)``."""
    names = []
    node: Any = definition
    tokens = [t for t in location.split("/") if t]
    for i, token in enumerate(tokens):
        if isinstance(node, dict) and token == "fields" and i + 1 < len(tokens):
            try:
                node = node["fields"][int(tokens[i + 1])]
                names.append(node["name"])
            except (IndexError, ValueError, KeyError):
                break
        elif isinstance(node, dict) and token in ("type", "items", "values"):
            node = node.get(token)
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
    field = f"field {'.'.join(names)!r} " if names else ""
    return f"{field}({location})"


def reader_problems(reader: Mapping[str, Any], writer: Mapping[str, Any]) -> list[str]:
    """Why a consumer with schema ``reader`` cannot read data written by ``writer``; [] if none."""
    result = ReaderWriterCompatibilityChecker().get_compatibility(_parse(reader), _parse(writer))
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    locations = sorted(loc for loc in result.locations if loc != "/") or ["/"]
    kinds = ", ".join(sorted({i.value.replace("_", " ") for i in result.incompatibilities}))
    details = "; ".join(sorted(result.messages))
    return [f"{kinds} at {', '.join(_where(reader, loc) for loc in locations)}: {details}"]


def read_problems(new: Mapping[str, Any], earlier: Sequence[Mapping[str, Any]]) -> list[str]:
    """BACKWARD_TRANSITIVE: what stops ``new`` from reading data of each of ``earlier`` (v1...)."""
    problems = []
    for version, old in enumerate(earlier, start=1):
        problems += [f"cannot read data written with v{version}: {p}"
                     for p in reader_problems(new, old)]
    return problems


# --------------------------------------------------------------------------- conventions


def _undocumented(t: Any, path: str, seen: set[str]) -> Iterable[str]:
    if isinstance(t, list):
        for branch in t:
            yield from _undocumented(branch, path, seen)
    elif isinstance(t, dict):
        kind = t.get("type")
        if kind in ("record", "error") and t.get("name") not in seen:
            seen.add(t["name"])
            for f in t.get("fields", ()):
                here = f"{path}.{f['name']}" if path else f["name"]
                if not str(f.get("doc", "")).strip():
                    yield here
                yield from _undocumented(f["type"], here, seen)
        elif kind == "array":
            yield from _undocumented(t["items"], path, seen)
        elif kind == "map":
            yield from _undocumented(t["values"], path, seen)


def _is_timestamp_millis(t: Any) -> bool:
    return isinstance(t, dict) and t.get("type") == "long" and \
        t.get("logicalType") == "timestamp-millis"


def convention_problems(name: str, version: int, definition: Mapping[str, Any]) -> list[str]:
    """The project's envelope and documentation rules for one schema version."""
    problems = []
    if definition.get("type") != "record":
        return ["the top-level type must be a record"]
    if not str(definition.get("doc", "")).strip():
        problems.append("the record has no doc")
    problems += [f"field {path!r} has no doc" for path in _undocumented(definition, "", set())]
    fields = {f["name"]: f for f in definition.get("fields", ())}
    if fields.get("event_id", {}).get("type") != "string":
        problems.append("needs field 'event_id' of type string (the event's UUID)")
    if not _is_timestamp_millis(fields.get("occurred_at", {}).get("type")):
        problems.append("needs field 'occurred_at' of type long/timestamp-millis (event time)")
    key = definition.get("partition_key")
    if not isinstance(key, list) or not key:
        problems.append("needs a 'partition_key' attribute: a list of field names")
    else:
        for field in key:
            t = fields.get(field, {}).get("type")
            if t not in ("string", ["null", "string"]):
                problems.append(f"partition_key field {field!r} must be a string field "
                                f"(nullable allowed), got {t!r}")
    for f in fields.values():
        if "pii" in f and f["pii"] not in PII_CLASSES:
            problems.append(f"field {f['name']!r}: unknown pii class {f['pii']!r}; "
                            f"known: {', '.join(sorted(PII_CLASSES))}")
    return problems


def lock_problems(catalog: SchemaCatalog, lock: Mapping[str, Mapping[str, int]],
                  previous: Mapping[str, Mapping[str, int]] | None = None) -> list[Problem]:
    """Ids: one per version, unique, growing with the version, never changed once assigned."""
    problems = []
    for name in catalog.names():
        ids = [sv.schema_id for sv in catalog.versions(name)]
        if ids != sorted(ids):
            problems.append(Problem(name, None, f"ids must grow with the version, got {ids}"))
    files = {(sv.name, str(sv.version)) for sv in catalog}
    for name, versions in lock.items():
        for version in versions:
            if (name, version) not in files:
                problems.append(Problem(name, int(version), "locked id without a schema file "
                                        "(a removed version's id must not be reused: restore it)"))
    for name, versions in (previous or {}).items():
        for version, schema_id in versions.items():
            now = lock.get(name, {}).get(version)
            if now != schema_id:
                problems.append(Problem(name, int(version), f"id changed from {schema_id} to "
                                        f"{now}: ids are assigned once and never change"))
    return problems


def check_schemas(root: Path = SCHEMA_ROOT, lock_file: Path = LOCK_FILE, *,
                  previous_lock: Mapping[str, Mapping[str, int]] | None = None) -> list[Problem]:
    """Every rule for every schema under ``root``; ``[]`` when all hold."""
    try:
        catalog = load_catalog(root, lock_file)
    except SchemaError as exc:
        return [Problem("catalog", None, str(exc))]
    problems: list[Problem] = []
    for name in catalog.names():
        versions = catalog.versions(name)
        for sv in versions:
            problems += [Problem(name, sv.version, p)
                         for p in convention_problems(name, sv.version, sv.definition)]
        for i, sv in enumerate(versions[1:], start=1):
            try:
                found = read_problems(sv.definition, [old.definition for old in versions[:i]])
            except SchemaError as exc:
                found = [str(exc)]
            problems += [Problem(name, sv.version, p) for p in found]
    problems += lock_problems(catalog, read_lock(lock_file), previous_lock)
    return problems


__all__ = [
    "COMPATIBILITY",
    "PII_CLASSES",
    "Problem",
    "check_schemas",
    "convention_problems",
    "lock_problems",
    "read_problems",
    "reader_problems",
]
