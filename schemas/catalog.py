"""Load the versioned ``.avsc`` files and their stable ids."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import fastavro

from cxstream.errors import SchemaError

SCHEMA_ROOT = Path(__file__).resolve().parent / "avro"
LOCK_FILE = Path(__file__).resolve().parent / "registry.lock.json"
_VERSION_FILE = re.compile(r"^v(\d+)\.avsc$")


@dataclass(frozen=True)
class PiiField:
    """A top-level field marked ``"pii": "<class>"`` in a schema."""

    name: str
    pii_class: str  # name, email, phone, national_id, free_text, ip, account


@dataclass(frozen=True)
class SchemaVersion:
    name: str
    version: int
    schema_id: int
    definition: dict[str, Any] = field(repr=False, compare=False)

    @cached_property
    def parsed(self) -> Any:
        """The fastavro-parsed schema (what fastavro's readers and writers take)."""
        return fastavro.parse_schema(self.definition)

    @property
    def full_name(self) -> str:
        return f"{self.definition['namespace']}.{self.definition['name']}"

    @property
    def canonical(self) -> str:
        """The schema as the JSON string a Confluent-compatible registry stores."""
        return json.dumps(self.definition, separators=(",", ":"), sort_keys=False)

    @cached_property
    def field_names(self) -> frozenset[str]:
        return frozenset(f["name"] for f in self.definition["fields"])

    @cached_property
    def pii_fields(self) -> tuple[PiiField, ...]:
        return tuple(
            PiiField(f["name"], str(f["pii"])) for f in self.definition["fields"] if "pii" in f
        )

    @property
    def partition_key(self) -> tuple[str, ...]:
        """Fields whose first non-null value is the Kafka message key."""
        return tuple(self.definition.get("partition_key", ("customer_id",)))


class SchemaCatalog:
    """Every version of every schema, by name and by id."""

    def __init__(self, versions: list[SchemaVersion]) -> None:
        self._by_id: dict[int, SchemaVersion] = {}
        self._by_name: dict[str, list[SchemaVersion]] = {}
        for sv in sorted(versions, key=lambda v: (v.name, v.version)):
            if sv.schema_id in self._by_id:
                other = self._by_id[sv.schema_id]
                raise SchemaError(
                    f"schema id {sv.schema_id} used by both {other.name} v{other.version} "
                    f"and {sv.name} v{sv.version}"
                )
            self._by_id[sv.schema_id] = sv
            self._by_name.setdefault(sv.name, []).append(sv)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def versions(self, name: str) -> list[SchemaVersion]:
        try:
            return list(self._by_name[name])
        except KeyError as exc:
            raise SchemaError(f"unknown schema {name!r}; known: {', '.join(self.names())}") from exc

    def latest(self, name: str) -> SchemaVersion:
        return self.versions(name)[-1]

    def by_id(self, schema_id: int) -> SchemaVersion:
        try:
            return self._by_id[schema_id]
        except KeyError as exc:
            raise SchemaError(f"unknown schema id {schema_id}") from exc

    def __iter__(self) -> Iterator[SchemaVersion]:
        for name in self.names():
            yield from self._by_name[name]


def read_lock(lock_file: Path = LOCK_FILE) -> dict[str, dict[str, int]]:
    if not lock_file.exists():
        return {}
    data: dict[str, dict[str, int]] = json.loads(lock_file.read_text())
    return data


def load_catalog(root: Path = SCHEMA_ROOT, lock_file: Path = LOCK_FILE) -> SchemaCatalog:
    """Read every ``<name>/vN.avsc`` under ``root`` with its id from the lock file.

    A version missing from the lock file is an error: ids must be assigned once, on purpose
    (``cxstream schemas lock``), never implicitly at runtime.
    """
    lock = read_lock(lock_file)
    versions: list[SchemaVersion] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        numbers = []
        for path in sorted(folder.iterdir()):
            match = _VERSION_FILE.match(path.name)
            if not match:
                continue
            version = int(match.group(1))
            numbers.append(version)
            try:
                definition = json.loads(path.read_text())
                fastavro.parse_schema(definition)
            except (ValueError, fastavro.schema.SchemaParseException) as exc:
                raise SchemaError(f"{path}: invalid Avro schema: {exc}") from exc
            try:
                schema_id = lock[folder.name][str(version)]
            except KeyError as exc:
                raise SchemaError(
                    f"{path}: no schema id in {lock_file.name}; run `cxstream schemas lock`"
                ) from exc
            versions.append(SchemaVersion(folder.name, version, schema_id, definition))
        if sorted(numbers) != list(range(1, len(numbers) + 1)):
            raise SchemaError(f"{folder}: versions must be v1..vN without gaps, got {numbers}")
    return SchemaCatalog(versions)


def assign_ids(root: Path = SCHEMA_ROOT, lock_file: Path = LOCK_FILE) -> dict[str, dict[str, int]]:
    """Give every version without an id the next free id; existing ids never change."""
    lock = read_lock(lock_file)
    next_id = 1 + max((i for vs in lock.values() for i in vs.values()), default=0)
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("v*.avsc"), key=lambda p: int(p.stem[1:])):
            version = path.stem[1:]
            entry = lock.setdefault(folder.name, {})
            if version not in entry:
                entry[version] = next_id
                next_id += 1
    lock_file.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    return lock
