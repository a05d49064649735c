"""Second stage: the global value of a KPI per window, and one alert when it stays off target.

Why a second stage: a worker holds only some input partitions, so its measurements are partials.
``kpi_measurement`` events are keyed by KPI, so every partial of one KPI lands on one partition
of the measurement topic and one worker (its owner) sees them all. That worker keeps, per KPI,
the partials of the watched window (``settings.kpi.breach_window``) by ``window_start`` and
input partition (the highest ``revision`` of each); a window is *complete* when every input
partition (``settings.kafka.partitions``; all event topics are co-partitioned) reported it. Each
partition publishes its windows in event-time order, so windows complete in order; a window that
can no longer complete (skipped after a jump in event time) is dropped when a later one does.

Breach rule, on complete windows in order: a window with at least ``min_samples`` events (any
number for count KPIs) that misses the target starts a streak at its end (or continues it); one
that meets it ends the streak; smaller windows change nothing. When a streak has lasted
``breach_seconds`` of event time, one ``alert`` (kind ``kpi``, level ``breach``, the department
owning the KPI) is raised, with ``alert_id = kpi-<kpi>-<window>-<streak start ms>``: a replay of
the same measurements gives the same id (receivers dedupe on it) and the state remembers it, so
a streak alerts once. Nothing here touches Faust: :func:`observe` updates a plain state value.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cxstream.settings import Settings
from processors.kpis.definitions import StreamKpi
from processors.kpis.windows import WINDOW_MS

#: namespace of the deterministic event ids of alerts and measurements
ID_NAMESPACE = uuid.UUID("9b0f4b52-5c1e-4a57-9a57-6f1f3c2b7d10")


@dataclass(frozen=True)
class BreachRule:
    window: str = "hour"
    breach_ms: int = 900_000
    min_samples: int = 30
    partitions: int = 4
    #: incomplete windows kept per KPI (an idle input partition never completes its windows)
    max_pending: int = 1440

    @classmethod
    def from_settings(cls, settings: Settings) -> BreachRule:
        kpi = settings.kpi
        return cls(
            window=kpi.breach_window,
            breach_ms=round(kpi.breach_seconds * 1000),
            min_samples=kpi.min_samples,
            partitions=settings.kafka.partitions,
        )


def new_state() -> dict[str, Any]:
    # offset: highest offset of the measurement topic applied (exact replay detection);
    # pending: window_start -> {input partition: [numerator, denominator, revision]};
    # evaluated: end of the last complete window judged; streak: its start (event time);
    # alerted: alert id raised for the current streak
    return {
        "offset": -1,
        "pending": {},
        "evaluated": None,
        "streak": None,
        "alerted": None,
    }


def alert_id(kpi: str, window: str, breach_start_ms: int) -> str:
    """Deterministic id of the breach of ``kpi`` on ``window`` that started at ``breach_start``."""
    return f"kpi-{kpi}-{window}-{breach_start_ms}"


def observe(
    state: dict[str, Any],
    kpi: StreamKpi,
    measurement: Mapping[str, Any],
    rule: BreachRule,
    *,
    now_ms: int,
) -> list[dict[str, Any]]:
    """Fold one partial ``measurement`` (a kpi_measurement record) into ``state``.

    Returns the alert records to publish (zero or one).
    """
    if measurement["window"] != rule.window or measurement.get("source_partition", -1) < 0:
        return []
    start = int(measurement["window_start"])
    evaluated = state["evaluated"]
    width = WINDOW_MS[rule.window]
    if evaluated is not None and start + width <= evaluated:
        return []  # judged already (a re-sent or late partial)
    pending = state["pending"]
    partials = pending.setdefault(str(start), {})
    partition = str(measurement["source_partition"])
    revision = int(measurement.get("revision", 0))
    if partition in partials and partials[partition][2] > revision:
        return []
    partials[partition] = [int(measurement["numerator"]), int(measurement["denominator"]), revision]
    if len(partials) < rule.partitions:
        if len(pending) > rule.max_pending:
            del pending[min(pending, key=int)]
        return []
    numerator = sum(p[0] for p in partials.values())
    denominator = sum(p[1] for p in partials.values())
    end = start + width
    state["evaluated"] = end
    for other in [s for s in pending if int(s) <= start]:
        del pending[other]
    alert = judge(state, kpi, start, end, numerator, denominator, rule, now_ms=now_ms)
    return [] if alert is None else [alert]


def judge(
    state: dict[str, Any],
    kpi: StreamKpi,
    start: int,
    end: int,
    numerator: int,
    denominator: int,
    rule: BreachRule,
    *,
    now_ms: int,
) -> dict[str, Any] | None:
    """Apply the breach rule to the global counts of one complete window."""
    if kpi.kind != "count" and denominator < rule.min_samples:
        return None
    if kpi.meets(numerator, denominator):
        state["streak"] = None
        state["alerted"] = None
        return None
    if state["streak"] is None:
        state["streak"] = end
    streak: int = state["streak"]
    if state["alerted"] is not None or end - streak < rule.breach_ms:
        return None
    ident = alert_id(kpi.key, rule.window, streak)
    state["alerted"] = ident
    return alert_record(
        kpi, ident, rule, streak=streak, start=start, end=end, numerator=numerator,
        denominator=denominator, now_ms=now_ms,
    )  # fmt: skip


def alert_record(
    kpi: StreamKpi,
    ident: str,
    rule: BreachRule,
    *,
    streak: int,
    start: int,
    end: int,
    numerator: int,
    denominator: int,
    now_ms: int,
) -> dict[str, Any]:
    value = kpi.value(numerator, denominator)
    due = streak + rule.breach_ms
    since = datetime.fromtimestamp(streak / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    shown = f"{value:.1%}" if kpi.kpi.unit == "percentunit" else f"{value:g}"
    return {
        "event_id": str(uuid.uuid5(ID_NAMESPACE, ident)),
        # event time: the end of the window that made the streak long enough
        "occurred_at": end,
        "alert_id": ident,
        "kind": "kpi",
        "level": "breach",
        "department": kpi.department,
        "subject_id": kpi.key,
        "customer_pseudonym": None,
        "deadline_at": due,
        "fired_at": now_ms,
        # in event time: non-zero when the window that reached the duration came late
        "late_ms": max(0, end - due),
        "summary": (
            f"{kpi.kpi.title}: {shown} ({rule.window} window), target {kpi.kpi.target_text}, "
            f"missed since {since}"
        ),
        "link": None,
        "details": {
            "kpi": kpi.key,
            "window": rule.window,
            "window_start": str(start),
            "value": repr(value),
            "target": repr(kpi.target),
            "numerator": str(numerator),
            "denominator": str(denominator),
            "breach_start": str(streak),
            "breach_seconds": str(rule.breach_ms // 1000),
        },
    }
