"""``cxstream stack``: start, stop and inspect the native local services."""

from __future__ import annotations

import time

import click

from cxstream.settings import load_settings
from cxstream.stack import manager, process

_ONLY_HELP = f"Comma-separated subset of: {', '.join(manager.SERVICE_NAMES)}."


def _only(value: str | None) -> list[str] | None:
    return manager.select(value.split(",")) if value else None


@click.group()
def stack() -> None:
    """Start, stop or check the native local services (Kafka, Redis, ClickHouse)."""


@stack.command()
@click.option("--only", default=None, help=_ONLY_HELP)
def up(only: str | None) -> None:
    """Start what is not running, then wait until healthy.

    Idempotent: services that already run are only checked. Prints each cold-start time.
    """
    began = time.monotonic()
    results = manager.up(load_settings(), _only(only), on_progress=click.echo)
    for result in results:
        if result.started and result.prepare_seconds >= 1.0:
            click.echo(f"{result.name}: preparation took {result.prepare_seconds:.1f} s")
    started = [result for result in results if result.started]
    summary = ", ".join(f"{r.name} {r.seconds:.1f} s" for r in started) or "nothing to start"
    click.echo(f"stack healthy in {time.monotonic() - began:.1f} s (cold start: {summary})")


@stack.command()
@click.option("--only", default=None, help=_ONLY_HELP)
def down(only: str | None) -> None:
    """Stop the running services.

    SIGTERM, then SIGKILL after CX_STACK__STOP_TIMEOUT_SECONDS. Idempotent.
    """
    for result in manager.down(load_settings(), _only(only)):
        if not result.stopped:
            click.echo(f"{result.name}: not running")
        else:
            how = "killed after the stop timeout" if result.killed else "stopped"
            click.echo(f"{result.name}: {how} (pid {result.pid})")


@stack.command()
@click.option("--only", default=None, help=_ONLY_HELP)
def status(only: str | None) -> None:
    """Show pid, port, health and log of each service.

    Exit code 1 unless every selected service is healthy.
    """
    from rich.console import Console
    from rich.table import Table

    rows = manager.status(load_settings(), _only(only))
    table = Table("service", "pid", "port", "healthy", "log", "note")
    for row in rows:
        table.add_row(
            row.name,
            str(row.pid) if row.pid else "-",
            str(row.port),
            "[green]yes[/green]" if row.healthy else "[red]no[/red]",
            str(row.log_file),
            row.note,
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # piped or captured: do not cut the log paths
    console.print(table)
    if not all(row.healthy for row in rows):
        raise click.ClickException("not every service is healthy")


@stack.command()
def fetch() -> None:
    """Download the Kafka jars (once).

    Maven resolves them from Maven Central into <home>/kafka/libs; later calls are no-ops.
    """
    settings = load_settings()
    began = time.monotonic()
    fetched = manager.fetch(settings)
    where = settings.stack.home / "kafka" / "libs"
    if fetched:
        click.echo(
            f"Kafka {settings.stack.kafka_version} jars fetched into {where} "
            f"in {time.monotonic() - began:.1f} s"
        )
    else:
        click.echo(f"Kafka {settings.stack.kafka_version} jars already in {where}")


@stack.command()
@click.argument("name", type=click.Choice(manager.SERVICE_NAMES))
@click.option("-n", "--lines", default=50, show_default=True, help="How many lines.")
@click.option("--console", is_flag=True, help="Show stdout/stderr of the process instead.")
def logs(name: str, lines: int, console: bool) -> None:
    """Print the end of a service's log."""
    svc = manager.make_service(name, load_settings())
    path = svc.console_file if console else svc.log_file
    click.echo(f"==> {path} <==")
    click.echo(process.tail(path, lines))
