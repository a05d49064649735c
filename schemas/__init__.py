"""The versioned Avro event contracts of cxstream.

Each event type has a folder ``schemas/avro/<name>/`` with one file per version (``v1.avsc``,
``v2.avsc``...). ``schemas/registry.lock.json`` gives every (name, version) a schema id that never
changes, so the embedded registry hands out the same ids on every machine.
"""

from schemas.catalog import PiiField, SchemaCatalog, SchemaVersion, load_catalog

__all__ = ["PiiField", "SchemaCatalog", "SchemaVersion", "load_catalog"]
