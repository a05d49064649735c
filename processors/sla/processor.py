"""``register(app, context)``: the SLA engine in a Faust worker (``--processor sla``).

- **Input**: ``feedback_submitted`` and ``feedback_status_changed`` through batch lanes (whole
  fetched batches of one partition; both topics are keyed by customer id and co-partitioned).
- **State**: items (:mod:`.lifecycle`) in memory, persisted to the Faust table ``sla-segments``
  as per-partition segments (:mod:`.store`: the items changed by a batch or a tick in a few
  changelog messages instead of one per item), written under the source partition so the
  changelog partition equals the partition of the items' events; a restart or rebalance
  recovers the table, and the items and the due-time index are rebuilt from it for the
  partitions this worker now owns (``on_recover``).
- **Timer**: every ``settings.sla.tick_interval_seconds`` (0.2 s), for owned partitions only,
  items due at wall-clock now (+ ``clock_skew_ms``) fire: alerts are emitted with
  ``context.emit("alert", ...)`` (keyed by feedback id), their acknowledgement is awaited, then
  the fired levels are written to the items (see :mod:`.engine` for why that order gives
  exactly one alert per level after dedupe by ``alert_id``). If delivery fails, the items go
  back to the index and fire at a later tick with the same ids.
- **Catch-up**: after an assignment, a partition's timers wait until the input backlog that was
  there at assignment has been read (so responses published while the worker was down stop
  their clocks before those fire), at most ``catch_up_timeout_seconds``.
- **Erasure**: ``erasure_requested`` (its own lane) drops the customer's items from memory, the
  due index and every persisted segment (:meth:`.store.SegmentStore.purge`), and keeps a marker
  per pseudonym (:mod:`.erasure`, table ``sla-erased``) so that their replayed feedback events
  (at or before the erasure time) are ignored; a recovery drops any item a marker covers (and
  the catch-up gate includes the erasure topic), so no alert fires for them afterwards.
- ``GET /v1/stats`` shows ``sla`` (items, index sizes, alerts fired per level, late ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cxstream.errors import ValidationError
from cxstream.privacy import pseudonymise
from processors.erasure.processor import check_request
from processors.sla.engine import STATUS_CHANGED, SUBMITTED, Firing, SlaEngine
from processors.sla.erasure import ErasedCustomers, keep_ms
from processors.sla.policy import HOUR_MS, SlaPolicy
from processors.sla.store import SegmentStore
from streams.batching import InputEvent, acting_for
from streams.codec import DecodedEvent

if TYPE_CHECKING:
    import faust

    from streams.app import AppContext

log = logging.getLogger(__name__)

NAME = "sla"
#: segments (:mod:`.store`); a new name, so a changelog of the old one-key-per-item layout
#: (``sla-items``) is never read as segments
TABLE = "sla-segments"
#: erased customers' markers (:mod:`.erasure`)
ERASED_TABLE = "sla-erased"
ERASURE = "erasure_requested"
#: how often (monotonic seconds) the timer looks for markers to expire
_EXPIRE_EVERY_S = 60.0


def check_feedback(event: DecodedEvent) -> None:
    """The engine needs an item id, a key and an event id on every feedback event."""
    record = event.record
    for name in ("feedback_id", "customer_id", "event_id"):
        if not record.get(name):
            raise ValidationError(f"{name} is empty", schema=event.name, field=name)


class PartitionMessage:
    """Stands in for a source message when writing the table outside a batch (the timer):
    Faust takes the changelog partition from the current event's message."""

    __slots__ = ("partition", "topic")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition


class SlaProcessor:
    """Glue between the batch lanes, the table, the timer and the pure engine."""

    def __init__(self, app: faust.App, context: AppContext, table: Any, erased_table: Any) -> None:
        settings = context.settings
        self.app = app
        self.context = context
        self.table = table
        self.sla = settings.sla
        self.topics = (settings.topic(SUBMITTED), settings.topic(STATUS_CHANGED))
        #: topics whose backlog gates the timers: responses and erasures first
        self.gated = (*self.topics, settings.topic(ERASURE))
        self._messages: dict[int, PartitionMessage] = {}
        self.store = SegmentStore(table, self.put)
        self.erased_table = erased_table
        self.erased = ErasedCustomers(settings, self.put_marker, keep_ms=keep_ms(settings))
        self._expired_at = time.monotonic()
        self.engine = SlaEngine(
            SlaPolicy.from_settings(settings),
            self.store,
            self.store.write,
            pseudonymise=lambda value: pseudonymise(value, settings, pii_class="customer_id"),
            link_base_url=self.sla.link_base_url,
            late_after_ms=self.sla.late_after_ms,
            retention_ms=round(self.sla.closed_retention_hours * HOUR_MS),
        )
        #: partitions whose index is built, and those whose backlog was read (timers run)
        self.owned: set[int] = set()
        self.live: set[int] = set()
        self._backlog: dict[int, dict[Any, int]] = {}
        self._armed_at = 0.0
        #: highest offset applied per (topic, partition), for the catch-up check
        self._read: dict[tuple[str, int], int] = {}
        self.ticks = 0
        self.tick_seconds_max = 0.0

    # -- table writes --------------------------------------------------------------------------

    def put(self, partition: int, key: str, value: dict[str, Any] | None) -> None:
        """Write a segment (None: delete it) to the table under ``partition``."""
        self._put(self.table, partition, key, value)

    def put_marker(self, partition: int, key: str, value: dict[str, Any] | None) -> None:
        """Write an erased customer's marker (None: delete it) under ``partition``."""
        self._put(self.erased_table, partition, key, value)

    def _put(self, table: Any, partition: int, key: str, value: dict[str, Any] | None) -> None:
        message = self._messages.get(partition)
        if message is None:
            message = self._messages[partition] = PartitionMessage(self.topics[0], partition)
        with acting_for(message):
            if value is None:
                with contextlib.suppress(KeyError):
                    del table[key]
            else:
                table[key] = value

    # -- input ---------------------------------------------------------------------------------

    def handle(self, batch: Sequence[InputEvent]) -> None:
        erased = self.erased
        self.engine.apply_batch(
            (event.partition, event.name, event.record)
            for event in batch
            # an erased customer's replayed events (at or before the erasure) stay out
            if not (
                len(erased)
                and erased.blocks(event.record["customer_id"], event.record["occurred_at"])
            )
        )
        # persisted before the lane acks the batch
        self.store.flush()
        self._note_read(batch[-1])

    def handle_erasure(self, batch: Sequence[InputEvent]) -> None:
        """Mark the customers erased, then drop their items everywhere (before the ack)."""
        now_ms = int(time.time() * 1000)
        latest: dict[str, tuple[int, int]] = {}  # customer id -> (erasure time, partition)
        for event in batch:
            cid = str(event.record["customer_id"])
            at = int(event.record["occurred_at"])
            known = latest.get(cid)
            if known is None or at > known[0]:
                latest[cid] = (at, event.partition)
        for cid, (at, partition) in latest.items():
            self.erased.add(partition, cid, at, now_ms)
        # by the marker's time (the latest erasure), so a replayed older request does as much
        self._erase({cid: self.erased.erased_at(cid) or at for cid, (at, _) in latest.items()})
        self.store.flush()
        self._note_read(batch[-1])

    def _erase(self, erased_at: dict[str, int]) -> int:
        gone = self.engine.erase(erased_at)
        self.store.purge(gone)
        return sum(map(len, gone.values()))

    def _note_read(self, last: InputEvent) -> None:
        where = (last.topic, last.partition)
        self._read[where] = max(self._read.get(where, -1), last.offset)

    # -- rebalance -----------------------------------------------------------------------------

    async def on_recover(self) -> None:
        partitions = self.active_partitions()
        started = time.perf_counter()
        loaded = self.store.recover(partitions)
        self.erased.recover(self.erased_table.items())
        if len(self.erased):
            # a crash between the markers' and the purge's writes: the markers win
            covered = {
                item["c"]: at
                for item in self.store.values()
                if (at := self.erased.erased_at(item["c"])) is not None
            }
            if covered:
                log.warning("sla: dropping items of %d erased customers found at recovery",
                            len(covered))  # fmt: skip
                self._erase(covered)
                self.store.flush()
        self.engine.rebuild(partitions)
        self.owned = partitions
        self.live = set()
        log.info(
            "sla: items and index rebuilt for partitions %s: %d items in %.2f s",
            sorted(partitions),
            loaded,
            time.perf_counter() - started,
        )
        await self._arm_catch_up(partitions)

    def active_partitions(self) -> set[int]:
        actives = self.app.assignor.assigned_actives()
        return {tp.partition for tp in actives if tp.topic == self.topics[0]}

    async def _arm_catch_up(self, partitions: set[int]) -> None:
        from faust.types import TP

        self._armed_at = time.monotonic()
        self._backlog = {}
        if not partitions:
            return
        tps = [TP(topic, p) for topic in self.gated for p in partitions]
        try:
            ends = await self.app.consumer.highwaters(*tps)
            for tp in tps:
                start = await self.app.consumer.position(tp)
                end = ends.get(tp) or 0
                # everything before the position at assignment was applied before (committed)
                if start is not None and start >= end:
                    continue
                self._backlog.setdefault(tp.partition, {})[tp] = end
        except Exception as exc:  # the gate is an optimisation: fall back to the timeout
            log.warning(
                "sla: catch-up offsets of %s unknown (%s); timers wait the timeout", tps, exc
            )
            self._backlog = {p: {None: 1} for p in partitions}
        self._update_live()

    def _update_live(self) -> None:
        timed_out = time.monotonic() - self._armed_at >= self.sla.catch_up_timeout_seconds
        for partition in self.owned - self.live:
            waiting = self._backlog.get(partition, {})
            caught_up = all(
                tp is not None and self._read.get((tp.topic, tp.partition), -1) + 1 >= end
                for tp, end in waiting.items()
            )
            if caught_up or timed_out:
                if not caught_up:
                    log.warning(
                        "sla: partition %d timers start before its backlog was read", partition
                    )
                self.live.add(partition)

    # -- timer ---------------------------------------------------------------------------------

    async def tick(self) -> None:
        if self.app.rebalancing or not self.owned:
            return
        if self.live != self.owned:
            self._update_live()
        started = time.perf_counter()
        now_ms = int(time.time() * 1000) + self.sla.clock_skew_ms
        if time.monotonic() - self._expired_at >= _EXPIRE_EVERY_S:
            self._expired_at = time.monotonic()
            self.erased.expire(now_ms, self.owned)
        try:
            firings = self.engine.due(now_ms, sorted(self.live))
            if firings:
                await self._deliver(firings)
        finally:
            # dropped items, and the marks of delivered alerts
            self.store.flush()
        self.ticks += 1
        self.tick_seconds_max = max(self.tick_seconds_max, time.perf_counter() - started)

    async def _deliver(self, firings: list[Firing]) -> None:
        try:
            futures = [
                await self.context.emit("alert", alert)
                for firing in firings
                for alert in firing.alerts
            ]
            await asyncio.gather(*futures)
        except BaseException:
            # not (all) acknowledged: fire again at a later tick, with the same alert ids
            self.engine.restore(firings)
            raise
        self.engine.fired(firings)

    def stats(self) -> dict[str, Any]:
        return {
            **self.engine.stats(),
            **self.store.stats(),
            **self.erased.stats(),
            "owned": sorted(self.owned),
            "live": sorted(self.live),
            "ticks": self.ticks,
            "tick_seconds_max": round(self.tick_seconds_max, 6),
        }


def register(app: faust.App, context: AppContext) -> None:
    import faust

    settings = context.settings
    json_schema: faust.Schema = faust.Schema(key_serializer="json", value_serializer="json")
    table = app.Table(
        TABLE,
        partitions=settings.kafka.partitions,
        schema=json_schema,
        help="feedback items (submission, status changes, fired alert levels) in segments",
    )
    erased_table = app.Table(
        ERASED_TABLE,
        partitions=settings.kafka.partitions,
        schema=json_schema,
        help="erased customers (pseudonym -> erasure time): their replays are ignored",
    )
    processor = SlaProcessor(app, context, table, erased_table)
    for event in (SUBMITTED, STATUS_CHANGED):
        context.batch_agent(event, processor.handle, step=NAME, check=check_feedback)
    context.batch_agent(ERASURE, processor.handle_erasure, step=NAME, check=check_request)
    table.on_recover(processor.on_recover)
    app.timer(settings.sla.tick_interval_seconds, name=f"{NAME}-tick")(processor.tick)
    context.stats[NAME] = processor.stats
