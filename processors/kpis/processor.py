"""The ``kpis`` processor: KPI windows per input partition, published as ``kpi_measurement``.

Stage 1, per source event type of :data:`processors.kpis.definitions.STREAM_KPIS`
(``channel_interaction``, ``survey_response``, ``security_flag``): a batch lane counts each
batch into the minute buckets of its partition (:mod:`processors.kpis.windows`) and publishes
the windows that closed as partial ``kpi_measurement`` events (``source_partition``,
``numerator``, ``denominator``, ``revision``; keyed by KPI). Stage 2 (:mod:`.breach`) reads the
``kpi_measurement`` topic, sums the partials of every input partition and raises ``alert``
events. Consumers that sum partials (the board) keep, per ``(kpi, window, window_start,
source_partition)``, the highest ``revision``.

State (changelogged Faust tables, written under :func:`streams.batching.acting_for` so every
entry sits in the changelog partition of its input partition): ``kpis-<source>`` holds
``"<partition>:<minute start>" -> {"offset", "counts": {kpi: [numerator, denominator]}}`` and
``"<partition>:meta" -> {"watermark", "closed", "published"}``; ``kpis-seen-<source>`` the
event ids applied within ``settings.worker.dedupe_window_seconds``; ``kpis-breach`` one entry per
KPI and watched window. Order within a batch: measurements and alerts are published and
acknowledged by the broker *before* the tables are written, so a crash in between replays the
batch and publishes the same events again (same ``event_id``), never loses them.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from processors.kpis.breach import ID_NAMESPACE, BreachRule, new_state, observe
from processors.kpis.definitions import BY_KPI, STREAM_KPIS, StreamKpi, by_source
from processors.kpis.windows import Measurement, SourcePartition, WindowConfig
from streams.batching import InputEvent, SeenEvents, acting_for, group_by_partition

if TYPE_CHECKING:
    import faust

    from streams.app import AppContext

log = logging.getLogger(__name__)

NAME = "kpis"
OUTPUT = "kpi_measurement"


def measurement_record(m: Measurement, kpi: StreamKpi) -> dict[str, Any]:
    """The ``kpi_measurement`` (v2) event of one partial; its id is a function of its content."""
    ident = (
        f"{m.kpi}|{m.window}|{m.window_start}|{m.partition}|{m.revision}|"
        f"{m.numerator}|{m.denominator}"
    )
    return {
        "event_id": str(uuid.uuid5(ID_NAMESPACE, ident)),
        "occurred_at": m.window_end,
        "kpi": m.kpi,
        "window": m.window,
        "window_start": m.window_start,
        "value": kpi.value(m.numerator, m.denominator),
        "target": kpi.target,
        "sample_size": m.denominator,
        "meets_target": kpi.meets(m.numerator, m.denominator),
        "numerator": m.numerator,
        "denominator": m.denominator,
        "source_partition": m.partition,
        "revision": m.revision,
    }


def _write(table: Any, message: Any, writes: dict[str, Any]) -> None:
    with acting_for(message):
        for key, value in writes.items():
            if value is None:
                with contextlib.suppress(KeyError):
                    del table[key]
            else:
                table[key] = value


class SourceWindows:
    """Stage 1 for one event type: its partitions' windows over one Faust table."""

    def __init__(
        self,
        context: AppContext,
        source: str,
        kpis: Sequence[StreamKpi],
        config: WindowConfig,
        table: Any,
        seen: SeenEvents,
    ) -> None:
        self.context = context
        self.source = source
        self.kpis = tuple(kpis)
        self.config = config
        self.table = table
        self.seen = seen
        self.parts: dict[int, SourcePartition] = {}
        self.counters = {"applied": 0, "replays": 0, "duplicates": 0, "too_late": 0, "published": 0}
        table.on_recover(self._rebuild)

    def part(self, partition: int) -> SourcePartition:
        part = self.parts.get(partition)
        if part is None:
            part = self.parts[partition] = SourcePartition(partition, self.kpis, self.config)
        return part

    async def handle(self, batch: list[InputEvent]) -> None:
        context = self.context
        for partition, items in group_by_partition(batch).items():
            part = self.part(partition)
            plan = part.plan(items, self.seen)
            futures = [
                await context.emit(OUTPUT, measurement_record(m, BY_KPI[m.kpi]))
                for m in plan.measurements
            ]
            # acknowledged before the tables move on: a crash now republishes, never loses
            await context.delivered(futures)
            last = items[-1]
            _write(self.table, last.message, plan.writes)
            self.seen.write(partition, last.message, last.timestamp_ms)
            part.commit(plan)
            counters = self.counters
            counters["applied"] += plan.applied
            counters["replays"] += plan.replays
            counters["duplicates"] += plan.duplicates
            counters["too_late"] += plan.too_late
            counters["published"] += len(plan.measurements)

    async def _rebuild(self) -> None:
        self.parts.clear()
        for key, value in self.table.items():
            if value is None:
                continue
            partition, suffix = str(key).split(":", 1)
            self.part(int(partition)).load(suffix, value)
        log.info("%s windows recovered: partitions %s", self.source, sorted(self.parts))

    def stats(self) -> dict[str, Any]:
        return {
            **self.counters,
            "watermarks": {p: part.meta["watermark"] for p, part in sorted(self.parts.items())},
        }


class BreachStage:
    """Stage 2: global values of the watched window per KPI, and the breach alerts."""

    def __init__(self, context: AppContext, rule: BreachRule, table: Any) -> None:
        self.context = context
        self.rule = rule
        self.table = table
        self.alerts = 0

    async def handle(self, batch: list[InputEvent]) -> None:
        context, rule = self.context, self.rule
        for _, items in group_by_partition(batch).items():
            states: dict[str, dict[str, Any]] = {}
            alerts: list[dict[str, Any]] = []
            now_ms = int(time.time() * 1000)
            for item in items:
                record = item.record
                kpi = BY_KPI.get(record["kpi"])
                if kpi is None or record["window"] != rule.window:
                    continue
                key = f"{kpi.key}:{rule.window}"
                state = states.get(key)
                if state is None:
                    stored = self.table.get(key)
                    state = new_state() if stored is None else copy.deepcopy(stored)
                    states[key] = state
                if item.offset <= state["offset"]:
                    continue  # applied before a crash
                state["offset"] = item.offset
                alerts.extend(observe(state, kpi, record, rule, now_ms=now_ms))
            futures = [await context.emit("alert", alert) for alert in alerts]
            await context.delivered(futures)
            if states:
                _write(self.table, items[-1].message, states)
            for alert in alerts:
                log.warning("KPI breach %s: %s", alert["alert_id"], alert["summary"])
            self.alerts += len(alerts)

    def stats(self) -> dict[str, Any]:
        states = {str(k): v for k, v in self.table.items() if v is not None}
        return {
            "window": self.rule.window,
            "alerts_raised": self.alerts,
            "evaluated": {k: v["evaluated"] for k, v in sorted(states.items())},
            "in_breach": sorted(k for k, v in states.items() if v["alerted"]),
        }


def register(app: faust.App, context: AppContext) -> None:
    import faust

    settings = context.settings
    partitions = settings.kafka.partitions
    window_ms = round(settings.worker.dedupe_window_seconds * 1000)
    config = WindowConfig.from_settings(settings)
    # JSON for table keys/values; the app default is raw bytes (for the Avro input topics)
    json_schema: faust.Schema = faust.Schema(key_serializer="json", value_serializer="json")
    sources: dict[str, SourceWindows] = {}
    for source, kpis in by_source(STREAM_KPIS).items():
        table = app.Table(
            f"{NAME}-{source}",
            partitions=partitions,
            schema=json_schema,
            help=f"KPI minute buckets of {source} per input partition",
        )
        seen_table = app.Table(
            f"{NAME}-seen-{source}",
            partitions=partitions,
            schema=json_schema,
            help=f"{source} event ids counted within the dedupe window",
        )
        stage = SourceWindows(
            context, source, kpis, config, table, SeenEvents(seen_table, window_ms)
        )
        context.batch_agent(source, stage.handle, step=f"{NAME}-{source}")
        sources[source] = stage
    breach_table = app.Table(
        f"{NAME}-breach",
        partitions=partitions,
        schema=json_schema,
        help="global KPI values being judged and breach streaks, per KPI",
    )
    breach = BreachStage(context, BreachRule.from_settings(settings), breach_table)
    context.batch_agent(OUTPUT, breach.handle, step=f"{NAME}-breach")

    def stats() -> dict[str, Any]:
        return {
            "sources": {name: stage.stats() for name, stage in sources.items()},
            "breach": breach.stats(),
        }

    context.stats[NAME] = stats
