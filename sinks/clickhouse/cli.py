"""``cxstream db`` (migrate, status, retention) and ``cxstream sink``.

Heavy imports (clickhouse-driver, chdb, confluent-kafka) happen inside the commands, so loading
this module for ``--help`` costs nothing.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from cxstream.settings import Settings
    from sinks.clickhouse.backend import ClickHouseBackend


def _backend() -> tuple[Settings, ClickHouseBackend]:
    from cxstream.settings import load_settings
    from sinks.clickhouse.backend import make_backend

    settings = load_settings()
    return settings, make_backend(settings)


def _where(settings: Settings) -> str:
    ch = settings.clickhouse
    if ch.host:
        return f"ClickHouse server {ch.host}:{ch.port}, database {ch.database}"
    return f"embedded chdb at {ch.chdb_path}, database {ch.database}"


@click.group()
def db() -> None:
    """ClickHouse tables: migrations, status, retention."""


@db.command()
def migrate() -> None:
    """Apply pending migrations and add columns of new schema fields (idempotent)."""
    from sinks.clickhouse.migrations import migrate as run_migrate

    settings, backend = _backend()
    try:
        report = run_migrate(backend)
    finally:
        backend.close()
    click.echo(f"{_where(settings)}:")
    if not report.changed:
        click.echo("  up to date")
    for migration in report.applied:
        click.echo(f"  applied {migration}")
    for column in report.columns_added:
        click.echo(f"  added column {column}")
    click.echo(f"  ({report.seconds:.2f} s)")


@db.command()
@click.option("--tables/--no-tables", default=True, help="Also list tables with rows and size.")
def status(tables: bool) -> None:
    """Show applied and pending migrations (and table sizes)."""
    from sinks.clickhouse.migrations import status as migration_status
    from sinks.clickhouse.migrations import table_counts

    settings, backend = _backend()
    try:
        states = migration_status(backend)
        counts = table_counts(backend) if tables else []
        version = backend.server_version()
    finally:
        backend.close()
    click.echo(f"{_where(settings)} (ClickHouse {version})")
    for state in states:
        when = state.applied_at.isoformat() if state.applied_at else "PENDING"
        note = "" if state.checksum_ok else "  CHANGED SINCE APPLIED"
        click.echo(f"  {state.id:<40} {when}{note}")
    if counts:
        click.echo("tables:")
        for name, engine, rows, size, parts in counts:
            if engine != "MaterializedView":
                click.echo(f"  {name:<32} {engine:<22} {rows:>12} rows {size:>12} B {parts:>4} p")


@db.command()
@click.option("--dry-run", is_flag=True, help="Only list the partitions that would be dropped.")
def retention(dry_run: bool) -> None:
    """Drop partitions older than the retention settings (CX_CLICKHOUSE__RETENTION_*)."""
    from sinks.clickhouse.retention import drop_expired

    settings, backend = _backend()
    try:
        dropped = drop_expired(backend, settings, dry_run=dry_run)
    finally:
        backend.close()
    verb = "would drop" if dry_run else "dropped"
    for p in dropped:
        click.echo(f"{verb} {p.table} partition {p.partition_id} ({p.rows} rows, to {p.last_day})")
    click.echo(f"{len(dropped)} partitions {verb} in {_where(settings)}")


@click.command()
def sink() -> None:
    """Run the ClickHouse sink (Kafka event topics -> ClickHouse) until SIGINT/SIGTERM."""
    from cxstream.settings import load_settings
    from sinks.clickhouse.sink import run_sink
    from streams.kafka_config import check_connection

    settings = load_settings()
    # librdkafka retries a refused login or an untrusted certificate forever: fail fast instead
    check_connection(settings)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        click.echo(f"signal {signum}: flushing the current batch and stopping", err=True)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)
    click.echo(f"sink: {settings.kafka.bootstrap_servers} -> {_where(settings)}", err=True)
    stats = run_sink(settings, stop)
    click.echo(
        f"sink stopped: {stats.consumed} consumed, {stats.inserted} inserted, "
        f"{stats.fenced} replays skipped, {stats.erased} erased dropped, "
        f"{stats.dead_letters} dead letters, "
        f"{stats.batches} batches, {stats.retries} retries",
        err=True,
    )
