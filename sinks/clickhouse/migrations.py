"""Versioned, idempotent DDL: ``migrations/NNNN_name.sql`` applied in order, recorded in
``schema_migrations``, then the raw tables synchronised with the newest Avro schemas.

- A file is a list of ``;``-terminated statements; ``{db}`` stands for the database. Every
  statement is idempotent on its own (``IF NOT EXISTS``; an ``ADD COLUMN`` that finds the column
  counts as done), so re-running a file that was interrupted half-way is safe, and two
  processes migrating at once (the sink starting while ``cxstream db migrate`` runs) both end
  with the same schema.
- An applied file must not change: its SHA-256 is recorded and a mismatch stops ``migrate``
  (write a new file instead).
- :func:`sync_columns` adds the columns of fields that newer schema versions introduced
  (``ALTER TABLE ... ADD COLUMN``, with the Avro default), so a compatible schema change lands
  without a hand-written migration; a changed column type is refused (that needs one).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from schemas import SchemaCatalog
from sinks.clickhouse.backend import ClickHouseBackend
from sinks.clickhouse.errors import ClickHouseError, MigrationError
from sinks.clickhouse.tables import Column, raw_tables

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
#: "already exists" answers that make a repeated statement a no-op
_ALREADY_DONE = frozenset({15, 44, 57, 82})  # DUPLICATE_COLUMN, ILLEGAL_COLUMN, TABLE/DB EXISTS
LEDGER = "schema_migrations"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str = field(repr=False)

    @property
    def id(self) -> str:
        return self.path.stem

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self, database: str) -> list[str]:
        return split_statements(self.sql.replace("{db}", database))


@dataclass(frozen=True)
class MigrationState:
    id: str
    applied_at: datetime | None
    #: ``False`` when the file changed after it was applied
    checksum_ok: bool = True


@dataclass
class MigrationReport:
    applied: list[str] = field(default_factory=list)
    #: ``table.column`` added by :func:`sync_columns`
    columns_added: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.columns_added)


def split_statements(sql: str) -> list[str]:
    """Statements of a migration file: ``--`` comment lines dropped, split at a final ``;``."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    statements, current = [], []
    for line in lines:
        current.append(line)
        if line.rstrip().endswith(";"):
            text = "\n".join(current).strip().rstrip(";").strip()
            if text:
                statements.append(text)
            current = []
    rest = "\n".join(current).strip()
    if rest:
        raise MigrationError(f"statement without a final ';': {rest[:80]!r}")
    return statements


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every ``NNNN_name.sql`` of ``directory``, by version; versions must be unique."""
    migrations: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_lowercase_name.sql")
        migrations.append(Migration(int(match.group(1)), match.group(2), path, path.read_text()))
    versions = [m.version for m in migrations]
    duplicates = sorted({v for v in versions if versions.count(v) > 1})
    if duplicates:
        raise MigrationError(f"{directory}: migration versions used twice: {duplicates}")
    return migrations


def _ensure_ledger(backend: ClickHouseBackend) -> None:
    backend.ensure_database()
    backend.execute(
        f"CREATE TABLE IF NOT EXISTS {backend.database}.{LEDGER} "
        "(id String, version UInt32, checksum String, applied_at DateTime('UTC')) "
        "ENGINE = ReplacingMergeTree ORDER BY id"
    )


def _applied(backend: ClickHouseBackend) -> dict[str, tuple[str, datetime]]:
    rows = backend.query(
        f"SELECT id, argMax(checksum, applied_at), max(applied_at) "
        f"FROM {backend.database}.{LEDGER} GROUP BY id"
    )
    return {str(r[0]): (str(r[1]), r[2]) for r in rows}


def _record(backend: ClickHouseBackend, id_: str, version: int, checksum: str) -> None:
    backend.insert(
        LEDGER,
        ["id", "version", "checksum", "applied_at"],
        [[id_], [version], [checksum], [int(time.time())]],
    )


def _run(backend: ClickHouseBackend, statement: str, where: str) -> None:
    try:
        backend.execute(statement)
    except ClickHouseError as exc:
        if exc.code in _ALREADY_DONE:
            log.info("%s: already applied: %s", where, " ".join(statement.split())[:100])
            return
        raise MigrationError(f"{where}: {exc}") from exc


def migrate(
    backend: ClickHouseBackend,
    *,
    catalog: SchemaCatalog | None = None,
    migrations: Sequence[Migration] | None = None,
) -> MigrationReport:
    """Apply pending migrations, then :func:`sync_columns`. Safe to run any number of times."""
    started = time.monotonic()
    report = MigrationReport()
    _ensure_ledger(backend)
    applied = _applied(backend)
    for migration in migrations if migrations is not None else load_migrations():
        done = applied.get(migration.id)
        if done is not None:
            if done[0] != migration.checksum:
                raise MigrationError(
                    f"{migration.path.name} changed after it was applied on {done[1]}; "
                    "applied migrations are immutable, add a new NNNN_*.sql instead"
                )
            continue
        for index, statement in enumerate(migration.statements(backend.database), start=1):
            _run(backend, statement, f"{migration.path.name} statement {index}")
        _record(backend, migration.id, migration.version, migration.checksum)
        report.applied.append(migration.id)
        log.info("applied migration %s", migration.id)
    report.columns_added = sync_columns(backend, catalog=catalog)
    report.seconds = time.monotonic() - started
    return report


def _column_ddl(column: Column) -> str:
    ddl = f"{column.name} {column.type}"
    default = column.default
    if column.kind == "value" and "Nullable" not in column.type and default is not None:
        if isinstance(default, bool):
            ddl += f" DEFAULT {int(default)}"
        elif isinstance(default, int | float):
            ddl += f" DEFAULT {default!r}"
        elif isinstance(default, str):
            ddl += " DEFAULT '{}'".format(default.replace("\\", "\\\\").replace("'", "\\'"))
    return ddl


def _normalise_type(type_: str) -> str:
    return type_.replace(" ", "")


def sync_columns(backend: ClickHouseBackend, *, catalog: SchemaCatalog | None = None) -> list[str]:
    """Add raw-table columns for fields of newer schema versions; refuse changed types."""
    db = backend.database
    existing: dict[str, dict[str, str]] = {}
    for table, name, type_ in backend.query(
        "SELECT table, name, type FROM system.columns WHERE database = %(db)s", {"db": db}
    ):
        existing.setdefault(str(table), {})[str(name)] = str(type_)
    added: list[str] = []
    conflicts: list[str] = []
    for table in raw_tables(catalog):
        have = existing.get(table.name)
        if have is None:
            raise MigrationError(
                f"raw table {db}.{table.name} is missing; a migration must create it "
                "(see `python -m sinks.clickhouse.tables`)"
            )
        for column in table.columns:
            current = have.get(column.name)
            if current is None:
                _run(
                    backend,
                    f"ALTER TABLE {db}.{table.name} ADD COLUMN {_column_ddl(column)}",
                    f"sync {table.name}",
                )
                _record(backend, f"column:{table.name}.{column.name}", 0, column.type)
                added.append(f"{table.name}.{column.name}")
            elif _normalise_type(current) != _normalise_type(column.type):
                conflicts.append(f"{table.name}.{column.name}: {current} -> {column.type}")
    if conflicts:
        raise MigrationError(
            "column types differ from the Avro schemas (write a migration): " + "; ".join(conflicts)
        )
    return added


def status(backend: ClickHouseBackend) -> list[MigrationState]:
    """Every known migration with when it was applied (``None``: pending)."""
    _ensure_ledger(backend)
    applied = _applied(backend)
    states = [
        MigrationState(
            m.id,
            applied[m.id][1] if m.id in applied else None,
            m.id not in applied or applied[m.id][0] == m.checksum,
        )
        for m in load_migrations()
    ]
    states.extend(
        MigrationState(id_, at)
        for id_, (_, at) in sorted(applied.items())
        if id_.startswith("column:")
    )
    return states


def table_counts(backend: ClickHouseBackend) -> list[tuple[Any, ...]]:
    """``(table, engine, rows, bytes, partitions)`` of every table of the database."""
    return backend.query(
        "SELECT t.name, t.engine, sum(p.rows), sum(p.bytes), uniqExact(p.partition) "
        "FROM system.tables AS t LEFT JOIN "
        "(SELECT table, rows, bytes, partition FROM system.parts "
        " WHERE database = %(db)s AND active) AS p ON p.table = t.name "
        "WHERE t.database = %(db)s GROUP BY t.name, t.engine ORDER BY t.name",
        {"db": backend.database},
    )
