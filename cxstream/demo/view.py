"""The demo's terminal view (rich tables when a TTY, one plain line otherwise)."""

from __future__ import annotations

import time
from typing import Any

from cxstream.demo.children import Child
from cxstream.demo.observe import Snapshot, percentile


def render(
    snap: Snapshot,
    previous: Snapshot | None,
    children: list[Child],
    simulator: Child | None,
    started: float,
) -> Any:
    from rich.console import Group
    from rich.table import Table

    status = Table(title=f"cxstream demo  ({time.time() - started:,.0f} s)", show_header=False)
    for child in [*children, *([simulator] if simulator else [])]:
        rc = child.process.poll()
        status.add_row(child.name, "running" if rc is None else f"exited {rc}", str(child.log))
    rate = snap.events_per_s(previous)
    status.add_row("events/s into Kafka", "-" if rate is None else f"{rate:,.0f}", "")
    for label, lag in snap.lag.items():
        status.add_row(f"lag of {label}", "-" if lag is None else f"{lag:,}", "")
    status.add_row("live profiles in Redis", f"{snap.profiles_in_redis:,}", "")
    if snap.api_latency_ms:
        p50, p99 = percentile(snap.api_latency_ms, 50), percentile(snap.api_latency_ms, 99)
        sources = ", ".join(f"{k} {v}" for k, v in sorted(snap.api_sources.items()))
        status.add_row("API GET profile", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms", sources)
    for error in snap.errors[-3:]:
        status.add_row("[yellow]waiting[/]", error, "")

    kpis = Table(title="KPIs of the CX plan (scorecard SQL, event time of this run)")
    kpis.add_column("KPI")
    kpis.add_column("value", justify="right")
    kpis.add_column("target", justify="right")
    for title, value, target, meets in snap.kpis:
        mark = "" if meets is None else ("[green]met[/]" if meets else "[red]below[/]")
        kpis.add_row(title, value, f"{target} {mark}")

    produced = Table(title="events per topic")
    produced.add_column("topic")
    produced.add_column("in Kafka", justify="right")
    produced.add_column("in ClickHouse (FINAL)", justify="right")
    for topic, n in sorted(snap.produced.items()):
        event = topic.split(".", 1)[-1]
        produced.add_row(topic, f"{n:,}", f"{snap.clickhouse.get(event, 0):,}")
    produced.add_row("dead letters", f"{snap.dead_letters:,}", "")

    alerts = Table(title=f"latest of {snap.alerts_received:,} alerts on-call received")
    for column in ("type", "department", "summary"):
        alerts.add_column(column)
    for delivery in snap.alerts:
        data = delivery.get("data") or {}
        alerts.add_row(
            str(delivery.get("type")), str(data.get("department")), str(data.get("summary"))[:80]
        )
    flags = Table(title="security flags")
    for column in ("rule", "severity", "principal", "n"):
        flags.add_column(column)
    for row in snap.flags:
        flags.add_row(*(str(cell) for cell in row))
    return Group(status, kpis, alerts, flags, produced)


def status_line(snap: Snapshot, started: float) -> str:
    lag = ", ".join(f"{k} {'-' if v is None else v}" for k, v in snap.lag.items())
    counted = ((snap.worker or {}).get("channel_counts") or {}).get("total", "-")
    met = sum(1 for *_, meets in snap.kpis if meets)
    return (
        f"[{time.time() - started:5.0f} s] in Kafka {sum(snap.produced.values()):,}, "
        f"in ClickHouse {sum(snap.clickhouse.values()):,}, interactions counted {counted}, "
        f"profiles {snap.profiles_in_redis:,}, alerts on-call {snap.alerts_received:,}, "
        f"KPIs met {met}/{len(snap.kpis)}, dead letters {snap.dead_letters}, lag: {lag}"
    )
