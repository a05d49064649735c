"""The one exception root of cxstream; every subpackage derives its errors from it."""

from __future__ import annotations


class CxStreamError(Exception):
    """Root of every error raised on purpose by cxstream."""


class ConfigurationError(CxStreamError):
    """A setting is missing, malformed or inconsistent with another one."""


class ServiceError(CxStreamError):
    """A service (Kafka, Redis, ClickHouse, registry) is unreachable or answered with an error."""


class SchemaError(CxStreamError):
    """An Avro schema is invalid, unknown or incompatible with an earlier version."""


class ValidationError(CxStreamError):
    """An event does not match its schema.

    ``field`` is the dotted path of the offending field (``""`` for the record itself) so that
    callers (SDK users, HTTP clients, the dead-letter topic) can say exactly what was wrong.
    """

    def __init__(self, message: str, *, schema: str = "", field: str = "") -> None:
        super().__init__(message)
        self.schema = schema
        self.field = field

    def __str__(self) -> str:
        where = f"{self.schema}.{self.field}" if self.field else self.schema
        return f"{where}: {self.args[0]}" if where else str(self.args[0])


class DecodeError(CxStreamError):
    """Bytes from Kafka cannot be turned into an event (bad framing, unknown id, bad body)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        #: short machine-readable cause, used in dead-letter headers and metrics
        self.reason = reason
