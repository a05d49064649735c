"""Schema registries: where the codec looks up schema ids.

Two implementations of :class:`SchemaRegistry`:

- :class:`EmbeddedRegistry` serves the versioned schemas of the repo with their locked ids (the
  default: no server, the same ids on every machine);
- :class:`streams.registry_http.ConfluentRegistryClient` speaks the Confluent Schema Registry REST
  API (Confluent, Apicurio's ccompat API, Karapace), chosen when ``settings.registry.url`` is set.

Subjects follow Confluent's TopicNameStrategy: the value schema of topic ``cx.transaction`` is
registered under ``cx.transaction-value``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from cxstream.errors import SchemaError
from schemas import SchemaCatalog, SchemaVersion, load_catalog

if TYPE_CHECKING:
    from cxstream.settings import Settings

VALUE_SUFFIX = "-value"


@runtime_checkable
class SchemaRegistry(Protocol):
    def latest(self, name: str) -> SchemaVersion:
        """Newest version of the schema of event type ``name`` (the reader schema)."""

    def by_id(self, schema_id: int) -> SchemaVersion:
        """The writer schema with this id; raises :class:`SchemaError` for an unknown id."""


class EmbeddedRegistry:
    """Registry backed by ``schemas/`` and ``schemas/registry.lock.json``."""

    #: its versions never change while it lives, so the codec may cache ``latest`` answers
    immutable = True

    def __init__(self, catalog: SchemaCatalog | None = None) -> None:
        self.catalog = catalog or load_catalog()
        # the codec asks for the latest version on every encode: make it one dict lookup
        self._latest = {name: self.catalog.latest(name) for name in self.catalog.names()}

    def latest(self, name: str) -> SchemaVersion:
        try:
            return self._latest[name]
        except KeyError:
            return self.catalog.latest(name)  # raises SchemaError naming the known schemas

    def by_id(self, schema_id: int) -> SchemaVersion:
        return self.catalog.by_id(schema_id)

    def names(self) -> list[str]:
        return self.catalog.names()


def subject_for(settings: Settings, name: str) -> str:
    """The registry subject of event type ``name`` (TopicNameStrategy, value schema)."""
    return f"{settings.topic(name)}{VALUE_SUFFIX}"


def name_for_subject(settings: Settings, subject: str) -> str | None:
    """The event type whose subject this is, or ``None`` for a subject that is not ours."""
    prefix = f"{settings.kafka.topic_prefix}."
    if subject.startswith(prefix) and subject.endswith(VALUE_SUFFIX):
        return subject[len(prefix) : -len(VALUE_SUFFIX)] or None
    return None


def normalized(definition: Mapping[str, Any] | str) -> str:
    """A schema as text that is equal for equal schemas, whatever their key order or spacing.

    Docs and custom attributes are kept: two versions that differ only in docs are still two
    versions, as in Confluent's registry.
    """
    if isinstance(definition, str):
        try:
            definition = json.loads(definition)
        except ValueError as exc:
            raise SchemaError(f"schema is not JSON: {exc}") from exc
    return json.dumps(definition, sort_keys=True, separators=(",", ":"))


def build_registry(settings: Settings) -> SchemaRegistry:
    """The embedded registry, or a Confluent-compatible client when ``registry.url`` is set."""
    if settings.registry.url is None:
        return EmbeddedRegistry()
    from streams.registry_http import ConfluentRegistryClient

    return ConfluentRegistryClient(settings)


__all__ = [
    "EmbeddedRegistry",
    "SchemaError",
    "SchemaRegistry",
    "build_registry",
    "name_for_subject",
    "normalized",
    "subject_for",
]
