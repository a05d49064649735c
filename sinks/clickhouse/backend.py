"""One small interface to ClickHouse, two implementations.

:class:`ServerBackend` talks to a ClickHouse server over the native protocol (clickhouse-driver);
:class:`ChdbBackend` runs ClickHouse in-process (chdb) on a local data directory, the default when
no server is configured (``settings.clickhouse.host is None``). Everything above this module (DDL,
the sink, retention, board queries) only uses :class:`ClickHouseBackend`, and only SQL in the
dialect common to ClickHouse 18.16 and 26.x.

Conventions both backends keep:

- parameters are ``%(name)s`` placeholders filled client-side with clickhouse-driver's escaping
  (ints, floats, strings, lists; pass times as epoch ints and wrap them in ``toDateTime()``);
- results are lists of tuples; ``DateTime`` values come back as timezone-aware ``datetime``;
- inserts are columnar: ``insert(table, columns, data)`` with one sequence per column; a
  ``DateTime`` column takes epoch seconds (int);
- errors are :class:`~sinks.clickhouse.errors.ClickHouseUnavailableError` (retry later),
  :class:`~sinks.clickhouse.errors.ClickHouseRejectedError` (the inserted data was refused) or
  :class:`~sinks.clickhouse.errors.ClickHouseError` (anything else, for example bad SQL).
"""

from __future__ import annotations

import json
import logging
import re
import struct
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cxstream.errors import ConfigurationError
from cxstream.settings import Settings
from sinks.clickhouse.errors import (
    ClickHouseError,
    ClickHouseRejectedError,
    ClickHouseUnavailableError,
)

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

#: server error codes that mean "this data cannot be stored", whatever the server's state
DATA_ERROR_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        131,  # TOO_LARGE_STRING_SIZE
        190,  # SIZES_OF_ARRAYS_DOESNT_MATCH
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        395,  # FUNCTION_THROW_IF_VALUE_IS_NON_ZERO (DEFAULT/MATERIALIZED guards)
    }
)
#: server error codes that mean "try again later" for any statement
TRANSIENT_ERROR_CODES = frozenset(
    {
        159,  # TIMEOUT_EXCEEDED
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        241,  # MEMORY_LIMIT_EXCEEDED
        252,  # TOO_MANY_PARTS
        425,  # SYSTEM_ERROR
    }
)
_CODE = re.compile(r"Code:\s*(\d+)")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ClickHouseBackend(Protocol):
    """What the sink, migrations, retention and boards need from ClickHouse."""

    #: ``"server"`` or ``"chdb"``
    kind: str
    #: the database every cxstream table lives in
    database: str

    def ensure_database(self) -> None:
        """Create :attr:`database` if it does not exist."""

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns nothing (DDL, ALTER, INSERT ... SELECT)."""

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a SELECT and return all its rows."""

    def insert(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]]) -> None:
        """Insert one block, columnar: ``data[i]`` holds the values of ``columns[i]``."""

    def ping(self) -> None:
        """Raise :class:`ClickHouseUnavailableError` unless a trivial query answers."""

    def server_version(self) -> str:
        """The ClickHouse version string, e.g. ``"18.16.1"``."""

    def close(self) -> None:
        """Release connections (the backend may be used again: it reconnects)."""


def check_identifier(name: str, what: str = "identifier") -> str:
    """``name`` if it is a plain SQL identifier (we splice database and table names into SQL)."""
    if not _IDENTIFIER.match(name):
        raise ConfigurationError(f"{what} {name!r} is not a plain identifier ([A-Za-z_][\\w]*)")
    return name


def make_backend(settings: Settings) -> ClickHouseBackend:
    """The configured backend: a server when ``clickhouse.host`` is set, else embedded chdb."""
    if settings.clickhouse.host:
        return ServerBackend(settings)
    return ChdbBackend(settings)


def _error_code(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


_TLS_FAILURE_MARKERS = ("CERTIFICATE_VERIFY_FAILED", "WRONG_VERSION_NUMBER", "[SSL", "SSLError")


def _first_line(sql: str) -> str:
    return " ".join(sql.split())[:160]


def _short(exc: BaseException) -> str:
    """The server's message without the C++ stack trace 18.16 appends."""
    text = getattr(exc, "message", None) or str(exc)
    return text.split(". Stack trace:")[0].strip()


class ServerBackend:
    """A ClickHouse server over the native protocol (clickhouse-driver, columnar inserts)."""

    kind = "server"

    def __init__(self, settings: Settings) -> None:
        ch = settings.clickhouse
        if not ch.host:
            raise ConfigurationError("clickhouse.host is not set; ServerBackend needs a server")
        self.database = check_identifier(ch.database, "clickhouse.database")
        self._settings = ch
        self._client: Any = None
        self._major: int | None = None

    def _connect(self, database: str) -> Any:
        from clickhouse_driver import Client

        ch = self._settings
        client = Client(
            host=ch.host,
            port=ch.port,
            user=ch.user,
            password=ch.password.get_secret_value() if ch.password else "",
            database=database,
            secure=ch.secure,
            ca_certs=str(ch.ca_certs) if ch.ca_certs else None,
            verify=bool(ch.secure),
            connect_timeout=ch.connect_timeout_seconds,
            send_receive_timeout=ch.query_timeout_seconds,
            sync_request_timeout=ch.connect_timeout_seconds,
            client_name="cxstream",
            settings={"strings_encoding": "utf-8"},
        )
        if ch.fast_insert_writer:
            from sinks.clickhouse.native import install

            install(client)  # whole-column packing of DateTime, Nullable, repeated strings
        return client

    @property
    def client(self) -> Any:
        if self._client is None:
            # connect to `default`: our database may not exist yet, and every statement of
            # cxstream names its database anyway (as on chdb)
            self._client = self._connect("default")
        return self._client

    def _ddl_settings(self) -> dict[str, Any]:
        # LowCardinality is experimental up to 18.x and the flag is unknown to newer servers
        if self._major is None:
            self._major = int(self.server_version().split(".")[0])
        return {"allow_experimental_low_cardinality_type": 1} if self._major < 19 else {}

    def _run(self, client: Any, sql: str, params: Any = None, **kwargs: Any) -> Any:
        from clickhouse_driver import errors as ch_errors

        try:
            return client.execute(sql, params, **kwargs)
        except ch_errors.ServerException as exc:
            code = _error_code(exc)
            cls = ClickHouseUnavailableError if code in TRANSIENT_ERROR_CODES else ClickHouseError
            raise cls(
                f"ClickHouse server {self._where()} refused `{_first_line(sql)}`: {_short(exc)}",
                code=code,
                statement=_first_line(sql),
            ) from exc
        except (ch_errors.NetworkError, ch_errors.SocketTimeoutError, EOFError, OSError) as exc:
            client.disconnect()
            self._raise_if_tls_failure(exc)
            raise ClickHouseUnavailableError(
                f"ClickHouse server {self._where()} unreachable during "
                f"`{_first_line(sql)}`: {_short(exc)}",
                statement=_first_line(sql),
            ) from exc
        except ch_errors.Error as exc:
            client.disconnect()
            raise ClickHouseUnavailableError(
                f"ClickHouse server {self._where()} failed `{_first_line(sql)}`: {_short(exc)}",
                code=_error_code(exc),
                statement=_first_line(sql),
            ) from exc

    def _where(self) -> str:
        return f"{self._settings.host}:{self._settings.port}"

    def _raise_if_tls_failure(self, exc: BaseException) -> None:
        # the driver flattens ssl.SSLError into a NetworkError's text; a refused certificate is
        # a configuration error, and retrying it forever would look like an outage
        text = str(exc)
        if not any(marker in text for marker in _TLS_FAILURE_MARKERS):
            return
        raise ClickHouseError(
            f"ClickHouse server {self._where()}: TLS handshake failed ({_short(exc)}); check "
            f"clickhouse.secure and clickhouse.ca_certs (now {self._settings.ca_certs})"
        ) from exc

    def ensure_database(self) -> None:
        self._run(self.client, f"CREATE DATABASE IF NOT EXISTS {self.database}")

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        settings = self._ddl_settings() if sql.lstrip()[:6].upper() == "CREATE" else None
        self._run(self.client, sql, params, settings=settings)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._run(self.client, sql, params)
        return rows

    def insert(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]]) -> None:
        from clickhouse_driver import errors as ch_errors

        sql = f"INSERT INTO {self.database}.{table} ({', '.join(columns)}) VALUES"
        try:
            # columnar: the driver packs each column in one go (several times faster than rows).
            # It rewrites values in place (None -> '' and so on) but only in the per-block
            # copies its column_chunks() slices, never in `data`, so a retried insert sends
            # the original values without a copy of ours (test_clickhouse_backend_server)
            self.client.execute(sql, data, columnar=True, types_check=False)
        except ch_errors.ServerException as exc:
            code = _error_code(exc)
            cls = (
                ClickHouseRejectedError if code in DATA_ERROR_CODES else ClickHouseUnavailableError
            )
            raise cls(
                f"insert into {table}: ClickHouse server {self._where()}: {_short(exc)}",
                code=code,
                statement=sql,
            ) from exc
        except (struct.error, TypeError, ValueError, OverflowError, AttributeError) as exc:
            # the driver packs values client-side: a value the column type cannot hold
            self.client.disconnect()  # the half-sent insert leaves the connection unusable
            raise ClickHouseRejectedError(
                f"insert into {table}: a value does not fit its column: {exc}", statement=sql
            ) from exc
        except (ch_errors.NetworkError, ch_errors.SocketTimeoutError, EOFError, OSError) as exc:
            self.client.disconnect()
            self._raise_if_tls_failure(exc)
            raise ClickHouseUnavailableError(
                f"insert into {table}: ClickHouse server {self._where()} unreachable: "
                f"{_short(exc)}",
                statement=sql,
            ) from exc
        except ch_errors.Error as exc:
            self.client.disconnect()
            code = _error_code(exc)
            cls = (
                ClickHouseRejectedError if code in DATA_ERROR_CODES else ClickHouseUnavailableError
            )
            raise cls(f"insert into {table}: {_short(exc)}", code=code, statement=sql) from exc

    def ping(self) -> None:
        self._run(self.client, "SELECT 1")

    def server_version(self) -> str:
        rows = self._run(self.client, "SELECT version()")
        return str(rows[0][0])

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client = None


class ChdbBackend:
    """ClickHouse in-process (chdb) on ``settings.clickhouse.chdb_path``.

    chdb allows one data path per process, and a path can be opened by one process at a time;
    several backends in one process share the embedded server.
    """

    kind = "chdb"

    def __init__(self, settings: Settings, path: Path | None = None) -> None:
        self.database = check_identifier(settings.clickhouse.database, "clickhouse.database")
        self.path = Path(path or settings.clickhouse.chdb_path)
        self._session: Any = None
        self._arrow_types: dict[str, dict[str, pa.DataType]] = {}

    @property
    def session(self) -> Any:
        if self._session is None:
            from chdb import session as chdb_session

            self.path.mkdir(parents=True, exist_ok=True)
            try:
                self._session = chdb_session.Session(str(self.path))
            except Exception as exc:  # chdb raises RuntimeError for a locked or foreign path
                raise ClickHouseError(
                    f"cannot open the embedded ClickHouse store at {self.path}: {exc} (a chdb "
                    "store belongs to one process; point several processes at a ClickHouse "
                    "server with CX_CLICKHOUSE__HOST)",
                    code=_error_code(exc),
                ) from exc
        return self._session

    def _sql(self, sql: str, params: Mapping[str, Any] | None) -> str:
        if not params:
            return sql
        from clickhouse_driver.util.escape import escape_params

        return sql % escape_params(params, None)

    def _query(self, sql: str, fmt: str) -> Any:
        try:
            return self.session.query(sql, fmt)
        except ClickHouseError:
            raise
        except Exception as exc:  # chdb raises ChdbError (a RuntimeError) with the server text
            code = _error_code(exc)
            cls = ClickHouseUnavailableError if code in TRANSIENT_ERROR_CODES else ClickHouseError
            raise cls(
                f"chdb ({self.path}) refused `{_first_line(sql)}`: {_short(exc)}",
                code=code,
                statement=_first_line(sql),
            ) from exc

    def ensure_database(self) -> None:
        self._query(f"CREATE DATABASE IF NOT EXISTS {self.database}", "CSV")

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._query(self._sql(sql, params), "CSV")
        if sql.lstrip()[:5].upper() in {"ALTER", "DROP "}:
            self._arrow_types.clear()  # column types may have changed

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        text = str(self._query(self._sql(sql, params), "JSONCompact"))
        if not text.strip():
            return []
        result = json.loads(text)
        converters = [_json_converter(meta["type"]) for meta in result["meta"]]
        return [
            tuple(conv(value) for conv, value in zip(converters, row, strict=True))
            for row in result["data"]
        ]

    def insert(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]]) -> None:
        import pyarrow as pa

        types = self._types(table)
        try:
            arrays = [
                _arrow_array(values, types.get(name))
                for name, values in zip(columns, data, strict=True)
            ]
            batch = pa.table(arrays, names=list(columns))
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            raise ClickHouseRejectedError(
                f"insert into {table}: a value does not fit its column: {exc}"
            ) from exc
        # INSERT ... SELECT FROM Python(<arrow table>): chdb's streaming insert (send_insert)
        # reports rows as written even when the server rejected the block (chdb 4.4), so it
        # would lose data silently; the query path raises the server's error
        sql = (
            f"INSERT INTO {self.database}.{table} ({', '.join(columns)}) "
            f"SELECT {', '.join(f'`{c}`' for c in columns)} FROM Python(arrow_rows)"
        )
        arrow_rows = batch  # noqa: F841  (chdb resolves the name from this frame)
        try:
            self.session.query(sql, "CSV")
        except Exception as exc:
            code = _error_code(exc)
            cls = (
                ClickHouseRejectedError if code in DATA_ERROR_CODES else ClickHouseUnavailableError
            )
            raise cls(
                f"insert into {table}: chdb: {_short(exc)}", code=code, statement=sql
            ) from exc

    def _types(self, table: str) -> dict[str, pa.DataType]:
        if table not in self._arrow_types:
            rows = self.query(
                "SELECT name, type FROM system.columns WHERE database = %(db)s AND table = %(t)s",
                {"db": self.database, "t": table},
            )
            self._arrow_types[table] = {name: _arrow_type(type_) for name, type_ in rows}
        return self._arrow_types[table]

    def ping(self) -> None:
        self._query("SELECT 1", "CSV")

    def server_version(self) -> str:
        return str(self.query("SELECT version()")[0][0])

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


def _unwrap(type_: str) -> tuple[str, bool]:
    """Strip LowCardinality(...) and Nullable(...); return the inner type and nullability."""
    nullable = False
    changed = True
    while changed:
        changed = False
        for wrapper in ("LowCardinality(", "Nullable("):
            if type_.startswith(wrapper) and type_.endswith(")"):
                nullable = nullable or wrapper == "Nullable("
                type_ = type_[len(wrapper) : -1]
                changed = True
    return type_, nullable


_ARROW_SCALARS = {
    "String": "string",
    "UInt8": "uint8",
    "UInt16": "uint16",
    "UInt32": "uint32",
    "UInt64": "uint64",
    "Int8": "int8",
    "Int16": "int16",
    "Int32": "int32",
    "Int64": "int64",
    "Float32": "float32",
    "Float64": "float64",
}


def _arrow_type(type_: str) -> pa.DataType | None:
    """Arrow type that chdb converts into the ClickHouse type; ``None`` lets pyarrow infer."""
    import pyarrow as pa

    inner, _ = _unwrap(type_)
    if inner.startswith("Array(") and inner.endswith(")"):
        item = _arrow_type(inner[len("Array(") : -1])
        return pa.list_(item) if item is not None else None
    if inner == "DateTime" or inner.startswith("DateTime("):
        return pa.uint32()  # epoch seconds, as the rows carry them
    name = _ARROW_SCALARS.get(inner)
    return getattr(pa, name)() if name else None


def _arrow_array(values: Sequence[Any], type_: pa.DataType | None) -> pa.Array:
    import pyarrow as pa

    try:
        return pa.array(values, type=type_)
    except pa.ArrowTypeError:
        # rows keep booleans as Python bools (the native driver packs them as UInt8)
        return pa.array(_bools_to_ints(values), type=type_)


def _bools_to_ints(values: Any) -> Any:
    if isinstance(values, bool):
        return int(values)
    if isinstance(values, list | tuple):
        return [_bools_to_ints(v) for v in values]
    return values


def _json_converter(type_: str) -> Any:
    inner, _ = _unwrap(type_)
    if inner.startswith("Array(") and inner.endswith(")"):
        item = _json_converter(inner[len("Array(") : -1])
        return lambda v: None if v is None else [item(x) for x in v]
    if inner == "DateTime" or inner.startswith("DateTime("):
        return _parse_datetime
    if inner == "Date":
        return lambda v: None if v is None else date.fromisoformat(v)
    if inner.startswith(("UInt", "Int")):
        return lambda v: None if v is None else int(v)
    return lambda v: v


def _parse_datetime(value: str | None) -> datetime | None:
    # DateTime columns of cxstream are UTC (DDL pins DateTime('UTC'))
    if value is None:
        return None
    return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
