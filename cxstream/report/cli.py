"""``cxstream report``: render the QA report of a period to one HTML file.

``--from`` / ``--to`` take an ISO date (``2026-12-01``: the whole day, UTC, for ``--to`` its
last second), an ISO date-time (``2026-12-01T08:00``, UTC unless it carries an offset), ``now``,
or a time before now (``7d``, ``12h``, ``30m``, ``2w``). The backend is the configured one:
``CX_CLICKHOUSE__HOST`` for a server, else the embedded chdb store.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import click

_RELATIVE = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, *, now: datetime, end: bool = False) -> datetime:
    """The moment ``text`` names (see the module docstring); ``end`` makes a bare date mean its
    last second, so ``--to 2026-12-07`` includes the 7th."""
    value = text.strip()
    if value == "now":
        return now
    relative = _RELATIVE.match(value)
    if relative:
        return now - timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    try:
        if len(value) == 10:  # a bare date, YYYY-MM-DD
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1, seconds=-1) if end else moment
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(
            f"{text!r}: expected an ISO date or date-time, 'now', or a time before now such as "
            "7d, 12h, 30m, 2w"
        ) from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def default_out(start: datetime, end: datetime) -> Path:
    return Path(f"report-{start:%Y%m%dT%H%M}Z-{end:%Y%m%dT%H%M}Z.html")


@click.command()
@click.option("--from", "from_", default="7d", show_default=True, help="Start of the period.")
@click.option("--to", "to", default="now", show_default=True, help="End of the period.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="HTML file to write [default: report-<from>-<to>.html].",
)
def report(from_: str, to: str, out: Path | None) -> None:
    """Render the QA report (KPIs against targets, SLA, security, personalisation) as HTML."""
    from cxstream.report.data import Period, collect
    from cxstream.report.render import render
    from cxstream.settings import load_settings
    from sinks.clickhouse.backend import make_backend

    now = datetime.now(UTC).replace(microsecond=0)
    start = parse_when(from_, now=now)
    end = parse_when(to, now=now, end=True)
    if end < start:
        raise click.BadParameter(f"--to {to!r} ({end:%Y-%m-%d %H:%M:%S}) is before --from")
    settings = load_settings()
    backend = make_backend(settings)
    started = time.perf_counter()
    try:
        data = collect(
            backend, Period(int(start.timestamp() * 1000), int(end.timestamp() * 1000)), settings
        )
    finally:
        backend.close()
    page = render(data)
    target = out or default_out(start, end)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    total = sum(data.coverage.values())
    click.echo(
        f"report {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC: {total:,} events, "
        f"{data.queries} queries, written to {target} in {time.perf_counter() - started:.1f} s"
    )
