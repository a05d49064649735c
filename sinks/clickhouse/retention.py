"""Retention by dropping whole partitions (ClickHouse 18.16 has no TTL).

Each table belongs to a retention class with its own setting (``0`` keeps forever):

- raw event tables and ``feedback_lifecycle``: ``retention_raw_days`` (day partitions);
  customer master data (``customer_registered``, ``consent_changed``, ``erasure_requested``)
  is never dropped by age;
- ``*_1m`` rollups and the sink's own tables (``sink_offsets``, ``sink_batches``,
  ``dead_letter``): ``retention_minute_rollup_days``;
- ``*_1h`` rollups and ``customer_days``: ``retention_hour_rollup_days``;
- ``*_1d`` rollups: ``retention_day_rollup_days``.

A partition is dropped once its *last* day is older than the limit, so month partitions go a
month later than day partitions would. Dropping raw data does not change the rollups.
"""

from __future__ import annotations

import calendar
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from cxstream.settings import Settings
from sinks.clickhouse.backend import ClickHouseBackend
from sinks.clickhouse.tables import LAYOUTS

log = logging.getLogger(__name__)

_SINK_TABLES = frozenset({"sink_offsets", "sink_batches", "dead_letter"})


@dataclass(frozen=True)
class Partition:
    table: str
    partition_id: str
    last_day: date
    rows: int


def retention_days(table: str, settings: Settings) -> int:
    """Days of data ``table`` keeps (``0``: forever)."""
    ch = settings.clickhouse
    layout = LAYOUTS.get(table)
    if layout is not None:
        return ch.retention_raw_days if layout.retention == "raw" else 0
    if table == "feedback_lifecycle":
        return ch.retention_raw_days
    if table.endswith("_1m") or table in _SINK_TABLES:
        return ch.retention_minute_rollup_days
    if table.endswith("_1h") or table == "customer_days":
        return ch.retention_hour_rollup_days
    if table.endswith("_1d"):
        return ch.retention_day_rollup_days
    return 0


def last_day(partition_id: str) -> date | None:
    """Last day covered by a ``toYYYYMMDD`` / ``toYYYYMM`` partition id (``None``: other keys)."""
    try:
        if len(partition_id) == 8:
            return date(int(partition_id[:4]), int(partition_id[4:6]), int(partition_id[6:]))
        if len(partition_id) == 6:
            year, month = int(partition_id[:4]), int(partition_id[4:])
            return date(year, month, calendar.monthrange(year, month)[1])
    except ValueError:
        return None
    return None


def partitions(backend: ClickHouseBackend) -> list[Partition]:
    """Active partitions of every table of the database."""
    rows = backend.query(
        "SELECT table, partition_id, sum(rows) FROM system.parts "
        "WHERE database = %(db)s AND active GROUP BY table, partition_id",
        {"db": backend.database},
    )
    found = []
    for table, partition_id, count in rows:
        day = last_day(str(partition_id))
        if day is not None:
            found.append(Partition(str(table), str(partition_id), day, int(count)))
    return sorted(found, key=lambda p: (p.table, p.partition_id))


def expired_partitions(
    backend: ClickHouseBackend, settings: Settings, *, today: date | None = None
) -> list[Partition]:
    """Partitions whose last day is older than their table's retention."""
    today = today or datetime.now(UTC).date()
    expired = []
    for partition in partitions(backend):
        days = retention_days(partition.table, settings)
        if days and partition.last_day < today - timedelta(days=days):
            expired.append(partition)
    return expired


def drop_expired(
    backend: ClickHouseBackend,
    settings: Settings,
    *,
    today: date | None = None,
    dry_run: bool = False,
) -> list[Partition]:
    """Drop every expired partition (or only list them with ``dry_run``); returns them."""
    expired = expired_partitions(backend, settings, today=today)
    if dry_run:
        return expired
    for partition in expired:
        backend.execute(
            f"ALTER TABLE {backend.database}.{partition.table} "
            f"DROP PARTITION ID '{partition.partition_id}'"
        )
        log.info(
            "dropped %s partition %s (%d rows, last day %s)",
            partition.table,
            partition.partition_id,
            partition.rows,
            partition.last_day,
        )
    return expired
