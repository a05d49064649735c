"""Progress of a publish run: a live rich table on a terminal, nothing until the end otherwise."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol


class Progress(Protocol):
    def update(
        self, sent: int, counts: Mapping[str, int], sim_ms: int, elapsed_s: float
    ) -> None: ...

    def close(self) -> None: ...


class NoProgress:
    """For pipes, logs and tests: the caller prints a summary at the end."""

    def update(self, sent: int, counts: Mapping[str, int], sim_ms: int, elapsed_s: float) -> None:
        return None

    def close(self) -> None:
        return None


class RichProgress:
    """A live table: events sent, rate, simulated clock, events per type."""

    def __init__(self, title: str) -> None:
        from rich.console import Console
        from rich.live import Live

        self._title = title
        self._live = Live(console=Console(), refresh_per_second=4, transient=False)
        self._live.start()

    def update(self, sent: int, counts: Mapping[str, int], sim_ms: int, elapsed_s: float) -> None:
        self._live.update(self._table(sent, counts, sim_ms, elapsed_s))

    def close(self) -> None:
        self._live.stop()

    def _table(self, sent: int, counts: Mapping[str, int], sim_ms: int, elapsed_s: float) -> Any:
        from rich.table import Table

        elapsed = max(elapsed_s, 1e-9)
        table = Table(title=self._title, show_edge=False)
        table.add_column("event type")
        table.add_column("sent", justify="right")
        for name in sorted(counts):
            table.add_row(name, f"{counts[name]:,}")
        sim = datetime.fromtimestamp(sim_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        table.add_section()
        table.add_row("total", f"{sent:,}")
        table.add_row("rate (events/s)", f"{sent / elapsed:,.0f}")
        table.add_row("simulated time", sim)
        return table
