"""``cxstream dashboards``: build the board JSON, check the panels' SQL, push to Grafana.

- ``build`` writes ``dashboards/json/<uid>.json`` (``--check`` only says whether they are stale);
- ``push --url --token --folder`` upserts the boards into a Grafana folder;
  ``push --dry-run`` contacts no Grafana: it validates the boards and runs every panel's SQL
  (macros expanded for the last ``--since``) on the configured ClickHouse instead.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dashboards.datasource import JSON_DIR

if TYPE_CHECKING:
    from cxstream.settings import Settings


@click.group()
def dashboards() -> None:
    """Build the Grafana boards or push them."""


@dashboards.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=JSON_DIR,
    show_default=True,
    help="Directory of the exported boards.",
)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 when the files are stale.")
def build(out: Path, check: bool) -> None:
    """Write every board as JSON (what Grafana provisioning loads)."""
    from dashboards.errors import DashboardError
    from dashboards.export import build_all, stale_files, validate, write_all

    boards = build_all()
    problems = [p for board in boards.values() for p in validate(board)]
    if problems:
        raise DashboardError("boards are malformed:\n" + "\n".join(problems))
    if check:
        stale = stale_files(out, boards)
        if stale:
            raise click.ClickException(
                f"stale board files in {out}: {', '.join(stale)} (run `cxstream dashboards build`)"
            )
        click.echo(f"{len(boards)} boards in {out} are up to date")
        return
    for path in write_all(out, boards):
        click.echo(f"wrote {path}")


@dashboards.command()
@click.option("--url", default=None, help="Grafana base URL [default: CX_GRAFANA__URL].")
@click.option(
    "--token",
    default=None,
    help="Service-account token (Editor) [default: CX_GRAFANA__TOKEN; prefer the variable].",
)
@click.option("--folder", default=None, help="Folder title [default: CX_GRAFANA__FOLDER].")
@click.option("--dry-run", is_flag=True, help="Run every panel's SQL on ClickHouse instead.")
@click.option(
    "--since",
    default="24h",
    show_default=True,
    help="Dry run: time range ending now (e.g. 6h, 7d).",
)
def push(url: str | None, token: str | None, folder: str | None, dry_run: bool, since: str) -> None:
    """Upsert the boards into a Grafana folder (idempotent, by board uid)."""
    from cxstream.settings import load_settings
    from dashboards.errors import DashboardError
    from dashboards.export import build_all, validate

    settings = load_settings()
    boards = build_all()
    problems = [p for board in boards.values() for p in validate(board)]
    if problems:
        raise DashboardError("boards are malformed:\n" + "\n".join(problems))
    if dry_run:
        _dry_run(settings, boards, since)
        return
    from dashboards.push import push_boards

    grafana = settings.grafana
    secret = token or (grafana.token.get_secret_value() if grafana.token else None)
    report = push_boards(
        boards,
        url=url or grafana.url,
        token=secret,
        folder=folder or grafana.folder,
        timeout=grafana.timeout_seconds,
        verify=grafana.verify_tls,
    )
    created = " (created)" if report.folder_created else ""
    click.echo(
        f"Grafana {report.grafana_version} at {report.grafana_url}, folder "
        f"{report.folder_uid}{created}"
    )
    for board in report.boards:
        click.echo(f"  {board.uid:<20} v{board.version}  {board.status}  {board.url}")
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)


def _dry_run(settings: Settings, boards: dict[str, dict[str, Any]], since: str) -> None:
    from dashboards.macros import TimeRange, parse_duration_ms
    from dashboards.runner import check_board
    from sinks.clickhouse.backend import make_backend

    now_ms = int(time.time() * 1000)
    time_range = TimeRange(now_ms - parse_duration_ms(since), now_ms)
    backend = make_backend(settings)
    failed = 0
    try:
        for board in boards.values():
            for check in check_board(backend, board, time_range):
                result = check.result
                if check.ok and result is not None:
                    click.echo(
                        f"ok    {check.query.name}: {len(result.rows)} rows, "
                        f"{result.elapsed_ms:.0f} ms"
                    )
                else:
                    failed += 1
                    click.echo("FAIL  " + "\n      ".join(check.problems), err=True)
    finally:
        backend.close()
    if failed:
        raise click.ClickException(f"{failed} panel queries failed on ClickHouse {backend.kind}")
