"""Schema registries: where the codec looks up schema ids.

``EmbeddedRegistry`` serves the versioned schemas of the repo with their locked ids (default, no
server needed).
"""

from __future__ import annotations

from typing import Protocol

from cxstream.errors import SchemaError
from schemas import SchemaCatalog, SchemaVersion, load_catalog


class SchemaRegistry(Protocol):
    def latest(self, name: str) -> SchemaVersion:
        """Newest version of the schema of event type ``name`` (the reader schema)."""

    def by_id(self, schema_id: int) -> SchemaVersion:
        """The writer schema with this id."""


class EmbeddedRegistry:
    """Registry backed by ``schemas/`` and ``schemas/registry.lock.json``."""

    def __init__(self, catalog: SchemaCatalog | None = None) -> None:
        self.catalog = catalog or load_catalog()

    def latest(self, name: str) -> SchemaVersion:
        return self.catalog.latest(name)

    def by_id(self, schema_id: int) -> SchemaVersion:
        return self.catalog.by_id(schema_id)

    def names(self) -> list[str]:
        return self.catalog.names()


__all__ = ["EmbeddedRegistry", "SchemaError", "SchemaRegistry"]
