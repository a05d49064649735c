"""Errors of the ClickHouse sink, all under :class:`cxstream.errors.ServiceError`."""

from __future__ import annotations

from cxstream.errors import SchemaError, ServiceError


class ClickHouseError(ServiceError):
    """ClickHouse answered with an error (``code`` is the server's error code when known)."""

    def __init__(self, message: str, *, code: int | None = None, statement: str = "") -> None:
        super().__init__(message)
        self.code = code
        #: the first line of the statement that failed, for the log and the dead-letter headers
        self.statement = statement


class ClickHouseUnavailableError(ClickHouseError):
    """ClickHouse cannot take the request now (unreachable, timed out, overloaded, not yet
    migrated): retry the same request later; nothing about the data is wrong."""


class ClickHouseRejectedError(ClickHouseError):
    """ClickHouse refused the data itself (a value it cannot store): retrying cannot help, so
    the sink bisects the batch and sends the offending rows to the dead-letter topic."""


class MigrationError(SchemaError):
    """A migration file is malformed, or applying one failed."""


class UnstorableValueError(ClickHouseRejectedError):
    """A decoded event holds a value no column can hold (found before sending, e.g. a timestamp
    outside ``DateTime``'s 1970-2106 range); it goes to the dead-letter topic like a rejection."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field
