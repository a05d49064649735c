"""Per-batch work of the recommender processor.

Per event, in partition order: the customer's state (Faust table ``reco-customers``, written
under :func:`streams.batching.acting_for` so its changelog partition is the source partition)
is updated unless the event's offset is at or below the one the state already holds (replay);
feedback and conversions go to the :class:`~online_models.reco.learner.Learner` *of that
source partition* unless its checkpointed offsets already include them. After the batch, touched
customers whose context or model moved enough get a new list: SET in Redis
(``<prefix>:reco:<customer id>``) and a ``recommendation`` event (with the propensity of every
item).

Ranking uses the customer's own reactions (``state["reactions"]``, at most one
``[positives, misses]`` pair per catalogue product, so bounded per customer; in the table, so
changelog-backed, replay-fenced by the state's offsets and gone with the erasure marker) as the
per-customer posterior on top of the partition learner's contextual model.

One learner per source partition (see :mod:`online_models.reco.checkpoint` for why): it is
checkpointed to Redis with its offsets (``<prefix>:reco-checkpoint:<app id>:<partition>``) every
``checkpoint_interval_seconds`` and when the partition is revoked, loaded when the partition is
assigned, and the feedback between its offsets and the group's committed ones is read back
(:mod:`.gaps`) before its first batch. So workers joining or leaving the group move warm models
with their partitions, and every feedback event is learned exactly once by exactly one model.

Erasure (``erasure_requested``): the customer's pending impressions and metrics entries leave
the learner (:meth:`Learner.forget`), the served list leaves Redis, the table keeps only a
marker ``{"erased": erasure time, "offsets": ...}``, and the partition's checkpoint is saved at
once after the batch (so the stored checkpoint stops naming them without waiting for the
interval, even when no offset moved). Their replayed events (``occurred_at`` at or before the
erasure time, also inside a gap read-back) are neither learned nor applied; their offsets still
count as applied. Events after the erasure start a fresh state (the marker's time is kept).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cxstream.settings import Settings
from online_models.reco import features as feats
from online_models.reco import serving
from online_models.reco.checkpoint import PartitionCheckpoints, RedisCheckpointStore, progress
from online_models.reco.evaluation import Prequential
from online_models.reco.learner import Learner
from online_models.reco.policy import BanditPolicy
from processors.reco.gaps import read_range
from streams.batching import (
    BatchAbandonedError,
    InputEvent,
    acting_for,
    batch_still_current,
    group_by_partition,
)

log = logging.getLogger(__name__)

EVENTS = (
    "customer_registered",
    "product_holding_changed",
    "consent_changed",
    "transaction",
    "recommendation_feedback",
    "erasure_requested",
)
LEARNED = frozenset({"recommendation_feedback", "product_holding_changed"})
_KPI_NAMESPACE = uuid.UUID("5b0f3c52-6f0e-4a39-9d57-0d6f4c1d7a11")
_MASK = (1 << 64) - 1
#: figure of the prequential window -> (KPI, numerator figure, denominator figure)
_KPIS = {
    "ctr": ("reco_click_through", "clicks", "impressions"),
    "conversion_rate": ("reco_conversion", "conversions", "impressions"),
    "hit_rate_at_k": ("reco_hit_rate_at_k", "lists_hit", "lists_shown"),
    # per partition: distinct products served there over the catalogue size
    "coverage": ("reco_coverage", "products_served", "catalogue_size"),
    "personalised_share": ("personalised_share", "served_active", "active_customers"),
}


def _covered(state: dict[str, Any], record: dict[str, Any]) -> bool:
    """An event of an erased customer that occurred at or before the erasure (a replay)."""
    erased = state.get("erased")
    return erased is not None and int(record["occurred_at"]) <= int(erased)


def _is_marker(state: dict[str, Any]) -> bool:
    """The state left by an erasure (no features, nothing to serve)."""
    return "erased" in state and "held" not in state


def _context(state: dict[str, Any], t: int) -> Callable[[str], dict[str, float]]:
    def context(_customer_id: str) -> dict[str, float]:
        return feats.context_features(state, t)

    return context


@dataclass
class PartitionModel:
    """The learner of one source partition while this worker owns the partition."""

    learner: Learner
    restored: bool
    #: topics whose gap between checkpoint and committed offset was already read back
    gap_checked: set[str] = field(default_factory=set)


class RecoProcessor:
    def __init__(self, settings: Settings, context: Any, table: Any, redis_client: Any) -> None:
        self.settings = settings
        self.reco = settings.reco
        self.context = context
        self.table = table
        self.redis = redis_client
        self.prefix = settings.kafka.topic_prefix
        self.topics = frozenset(settings.topic(name) for name in EVENTS)
        self.checkpoints = PartitionCheckpoints(
            RedisCheckpointStore(redis_client),
            f"{self.prefix}:reco-checkpoint:{settings.worker.app_id}",
            self.reco.checkpoint_interval_seconds,
        )
        #: source partition -> its learner, for the partitions this worker owns now
        self.models: dict[int, PartitionModel] = {}
        self.rng = random.Random()
        self.counts = {
            "served": 0, "withdrawn": 0, "replays": 0, "gap_events": 0, "erased": 0,
            "erased_events_ignored": 0, "partitions_loaded": 0, "partitions_released": 0,
            "redis_errors": 0,
        }  # fmt: skip
        #: Redis key -> (served list JSON or None to delete, TTL) not written yet (Redis down)
        self.pending: dict[str, tuple[str | None, int]] = {}
        #: partitions whose checkpoint must be replaced (an erasure) but Redis refused so far
        self.must_save: set[int] = set()
        self.lock = asyncio.Lock()
        #: delivery futures of emitted events not known to be acknowledged yet
        self.undelivered: list[Any] = []
        self.started = time.monotonic()
        self.first_served_after_s: float | None = None

    # -- partition ownership ----------------------------------------------------------------------

    def new_learner(self) -> Learner:
        return Learner(
            BanditPolicy(
                epsilon=self.reco.epsilon,
                learning_rate=self.reco.learning_rate,
                prior_strength=self.reco.prior_strength,
                optimism=self.reco.optimism,
            ),
            window_ms=round(self.reco.attribution_window_seconds * 1000),
            metrics=Prequential(self.reco.kpi_window_seconds * 1000),
        )

    def model(self, partition: int) -> PartitionModel:
        """The learner of ``partition``, loaded from its checkpoint the first time it is needed."""
        model = self.models.get(partition)
        if model is None:
            restored = self.checkpoints.load(partition)
            model = PartitionModel(restored or self.new_learner(), restored is not None)
            self.models[partition] = model
            self.counts["partitions_loaded"] += 1
            log.info(
                "reco: partition %d learner %s", partition,
                "restored from checkpoint" if restored else "new",
            )  # fmt: skip
        return model

    def partitions_of(self, tps: Iterable[Any]) -> set[int]:
        return {tp.partition for tp in tps if tp.topic in self.topics}

    def on_assigned(self, tps: Iterable[Any]) -> None:
        """Load the learners of the assigned partitions now (warm before the first batch).

        With Redis down the load is left to the partition's first batch (:meth:`loaded_model`),
        which waits for Redis: raising here would crash the worker on every start.
        """
        import redis

        for partition in sorted(self.partitions_of(tps)):
            try:
                self.model(partition)
            except redis.RedisError as exc:
                self.counts["redis_errors"] += 1
                log.warning(
                    "reco: partition %d checkpoint not loaded yet (Redis: %s)", partition, exc
                )

    async def loaded_model(self, partition: int) -> PartitionModel:
        """:meth:`model`, waiting (with backoff) while Redis cannot give the checkpoint.

        A learner must start from its checkpoint or feedback would be learned twice, so the
        partition's batches wait for Redis rather than start cold.
        """
        import redis

        delay = 0.5
        while True:
            try:
                return self.model(partition)
            except redis.RedisError as exc:
                self.counts["redis_errors"] += 1
                log.warning(
                    "reco: waiting for Redis to load partition %d (%s); retry in %.1f s",
                    partition, exc, delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
                if not batch_still_current():
                    # a rebalance began: waiting on would hold up the revocation with this
                    # batch unacked and its partition possibly someone else's already
                    raise BatchAbandonedError(
                        f"reco: partition {partition} checkpoint not loaded"
                    ) from exc
                delay = min(delay * 2, 10.0)

    def on_revoked(self, tps: Iterable[Any]) -> None:
        """Save and drop the learners of revoked partitions: their next owner loads them.

        Faust calls this after the batches in flight were acked, before the group rejoins, so
        the save lands before any new owner loads. Dropping (even a partition that comes back)
        means a learner is only ever used right after a load of its newest checkpoint.
        """
        for partition in sorted(self.partitions_of(tps)):
            model = self.models.pop(partition, None)
            if model is not None:
                self._release(partition, model.learner)
                self.counts["partitions_released"] += 1

    def _release(self, partition: int, learner: Learner) -> None:
        # a save lost to a Redis outage is safe: the next owner loads the previous checkpoint
        # and re-reads the feedback after it from Kafka (the gap fill), learning it once
        import redis

        if not all(_settled(f) for f in self.undelivered):
            # its emitted events are not acknowledged yet: the previous checkpoint + gap fill
            return
        try:
            self.checkpoints.release(partition, learner)
        except redis.RedisError as exc:
            self.counts["redis_errors"] += 1
            log.warning("reco: checkpoint of partition %d not saved (Redis: %s)", partition, exc)

    # -- batches ----------------------------------------------------------------------------------

    async def checkpoint_due(self) -> None:
        """Save every owned partition's checkpoint that is due (from a timer, between batches)."""
        async with self.lock:
            for partition, model in sorted(self.models.items()):
                self._checkpoint(partition, model.learner)

    async def handle(self, batch: list[InputEvent]) -> None:
        # one batch or timer save at a time: a checkpoint must not catch a batch half-applied
        async with self.lock:
            await self._handle(batch)

    async def _handle(self, batch: list[InputEvent]) -> None:
        futures: list[Awaitable[Any]] = []
        touched: list[int] = []
        forgot: set[int] = set()
        for partition, items in group_by_partition(batch).items():
            model = await self.loaded_model(partition)
            await self._gap_fill(model, items[0])
            futures += await self._partition(model.learner, partition, items, forgot)
            futures += await self._emit_closed_windows(model.learner, partition)
            touched.append(partition)
        # effects acknowledged before the batch's offsets move and before any checkpoint
        # (a checkpoint records the learner's applied offsets); waiting only before
        # checkpoints was tried and left a CI run without any checkpoint: kept simple
        await self.context.delivered(futures)
        self.must_save.update(forgot)
        models = self.models
        for partition in touched:
            self._checkpoint(partition, models[partition].learner)

    def _checkpoint(self, partition: int, learner: Learner) -> None:
        """Save the partition's learner when due; at once after an erasure (until it worked).

        Checkpoints live in Redis: while it is down the learner goes on in memory (a restart
        then resumes from the last checkpoint and re-reads the gap from Kafka).
        """
        import redis

        forced = partition in self.must_save
        try:
            if forced:
                # the stored checkpoint still names the erased customers: replace it now
                if not self.checkpoints.save(partition, learner):
                    log.warning(
                        "reco: checkpoint of partition %d after an erasure refused (a newer "
                        "one is stored)", partition,
                    )  # fmt: skip
                self.must_save.discard(partition)
            else:
                self.checkpoints.maybe_save(partition, learner)
        except redis.RedisError as exc:
            self.counts["redis_errors"] += 1
            log.warning("reco: checkpoint of partition %d not saved (Redis: %s)", partition, exc)

    async def _partition(
        self, learner: Learner, partition: int, items: Sequence[InputEvent], forgot: set[int]
    ) -> list[Any]:
        touched: dict[str, tuple[dict[str, Any], InputEvent]] = {}
        for item in items:
            record = item.record
            cid = record.get("customer_id")
            if not cid:
                continue
            name = item.name
            entry = touched.get(cid)
            state = entry[0] if entry is not None else self._load(cid)
            if name == "erasure_requested":
                if item.offset <= state["offsets"].get(name, -1):
                    self.counts["replays"] += 1
                    continue
                state["offsets"][name] = item.offset
                self.forget(cid, learner)
                forgot.add(partition)
                erased = max(int(record["occurred_at"]), int(state.get("erased") or 0))
                touched[cid] = ({"erased": erased, "offsets": state["offsets"]}, item)
                continue
            if _covered(state, record):
                # an erased customer's replayed event: never learned, never applied
                if name in LEARNED and not learner.already_applied(
                    item.topic, partition, item.offset
                ):
                    learner.skip(item.topic, partition, item.offset)
                self.counts["erased_events_ignored"] += 1
                continue
            if _is_marker(state):
                # the first event after the erasure: a fresh state that keeps the marker
                state = {
                    **feats.new_state(),
                    "erased": state["erased"],
                    "offsets": state["offsets"],
                }
            if name in LEARNED and not learner.already_applied(item.topic, partition, item.offset):
                if name == "recommendation_feedback":
                    t = record["occurred_at"]
                    learner.feedback(item.topic, partition, item.offset, record, _context(state, t))
                else:
                    learner.holding_changed(item.topic, partition, item.offset, record)
            if item.offset <= state["offsets"].get(name, -1):
                self.counts["replays"] += 1
                continue
            state["offsets"][name] = item.offset
            learner.metrics.active(record["occurred_at"], cid)
            if name == "recommendation_feedback":
                self._note_feedback(state, record)
            else:
                feats.apply_event(state, name, record)
            touched[cid] = (state, item)
        return await self._serve_and_store(learner, touched)

    def _load(self, customer_id: str) -> dict[str, Any]:
        stored = self.table.get(customer_id)
        return feats.new_state() if stored is None else json.loads(json.dumps(stored))

    @staticmethod
    def _note_feedback(state: dict[str, Any], record: dict[str, Any]) -> None:
        action = record["action"]
        product = record["product_id"]
        if action == "impression":
            feats.note_reaction(state, product, False)
            served = state.get("served")
            if served is not None and served["id"] == record["recommendation_id"]:
                served["shown"] = True
        elif action == "click":
            feats.note_click(state, product)

    async def _serve_and_store(
        self, learner: Learner, touched: dict[str, tuple[dict[str, Any], InputEvent]]
    ) -> list[Any]:
        futures: list[Any] = []
        pipe = _PendingWrites(self.pending)
        policy = learner.policy
        reco = self.reco
        for cid, (state, item) in touched.items():
            key = f"{self.prefix}:reco:{cid}"
            if not _is_marker(state):
                now = item.record["occurred_at"]
                x = feats.context_features(state, now)
                eligible = feats.eligible(state, now)
                if serving.needs_serving(
                    state, x, eligible, policy.updates,
                    feature_threshold=reco.feature_change_threshold,
                    model_threshold=reco.model_change_threshold,
                ):  # fmt: skip
                    if eligible:
                        futures.append(
                            await self._serve(learner, pipe, key, cid, state, x, eligible, now)
                        )
                    elif state.pop("served", None) is not None:
                        pipe.delete(key)
                        self.counts["withdrawn"] += 1
            with acting_for(item.message):
                self.table[cid] = state
        self.flush_redis()
        return futures

    def flush_redis(self) -> None:
        """Write the pending served lists to Redis; keep them for the next batch if it is down.

        Redis is a view of the served lists (the table holds them): an outage must not stop the
        stream, so failed writes stay pending (latest per key) and go out once it answers.
        """
        if not self.pending:
            return
        import redis

        pipe = self.redis.pipeline(transaction=False)
        for key, (value, ttl) in self.pending.items():
            if value is None:
                pipe.delete(key)
            else:
                pipe.set(key, value, ex=ttl)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            self.counts["redis_errors"] += 1
            if self.counts["redis_errors"] == 1 or self.counts["redis_errors"] % 100 == 0:
                log.warning("reco: Redis unavailable, %d lists pending: %s", len(self.pending), exc)
            return
        self.pending.clear()

    async def _serve(
        self, learner: Learner, pipe: Any, key: str, cid: str, state: dict[str, Any],
        x: dict[str, float], eligible: list[str], now: int,
    ) -> Any:  # fmt: skip
        policy = learner.policy
        served = serving.recommend(
            policy, cid, x, eligible, k=self.reco.k, now_ms=now, rng=self.rng,
            model_version=f"{policy.name}-{policy.updates}", history=state["reactions"],
        )  # fmt: skip
        serving.remember_served(state, served, x, eligible, policy.updates)
        products = [i["product_id"] for i in served["items"]]
        learner.metrics.served(now, cid, products)
        public = {
            "recommendation_id": served["recommendation_id"],
            "items": [
                {"product_id": i["product_id"], "score": i["score"], "reason": i["reason"]}
                for i in served["items"]
            ],
            "policy": served["policy"],
            "model_version": served["model_version"],
            "served_at": now,
        }
        pipe.set(key, json.dumps(public, separators=(",", ":")), ex=self.reco.ttl_seconds)
        self.counts["served"] += 1
        if self.first_served_after_s is None:
            self.first_served_after_s = time.monotonic() - self.started
        return await self.context.emit(
            "recommendation",
            {
                "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                "occurred_at": now,
                "customer_id": cid,
                "recommendation_id": served["recommendation_id"],
                "items": [
                    {
                        "product_id": i["product_id"],
                        "rank": rank,
                        "score": i["score"],
                        "propensity": i["propensity"],
                        "reason_code": i["reason"],
                    }
                    for rank, i in enumerate(served["items"], 1)
                ],
                "policy": served["policy"],
                "model_version": served["model_version"],
                "explored": served["explored"],
            },
        )

    # -- exactly-once learning across restarts ----------------------------------------------------

    async def _gap_fill(self, model: PartitionModel, first: InputEvent) -> None:
        if first.name not in LEARNED or first.topic in model.gap_checked:
            return
        model.gap_checked.add(first.topic)
        learner = model.learner
        start = learner.applied_offset(first.topic, first.partition) + 1
        if first.offset <= start:
            return
        records = await asyncio.to_thread(
            read_range, self.settings, self.context.codec, first.topic, first.partition, start,
            first.offset,
        )  # fmt: skip
        for offset, record in records:
            state = self._load(record["customer_id"])
            if _covered(state, record):
                learner.skip(first.topic, first.partition, offset)
                self.counts["erased_events_ignored"] += 1
            elif first.name == "recommendation_feedback":
                t = record["occurred_at"]
                learner.feedback(first.topic, first.partition, offset, record, _context(state, t))
            else:
                learner.holding_changed(first.topic, first.partition, offset, record)
        self.counts["gap_events"] += len(records)
        log.info("reco: read back %d events of %s[%d]", len(records), first.topic, first.partition)

    # -- KPI rows, erasure, stats -----------------------------------------------------------------

    async def _emit_closed_windows(self, learner: Learner, partition: int) -> list[Any]:
        """Partial KPI rows (``source_partition``) of the windows ``partition`` has closed."""
        from dashboards.kpis import BY_KEY

        metrics = learner.metrics
        watermark = learner.watermark.get(partition, 0)
        futures: list[Any] = []
        window_ms = metrics.window_ms
        revision = progress(learner)
        app_id = self.settings.worker.app_id
        for start, figures in metrics.close(watermark - window_ms):
            for figure, (kpi, num, den) in _KPIS.items():
                value = float(figures[figure])
                target = BY_KEY[kpi].target if kpi in BY_KEY else 0.0
                futures.append(
                    await self.context.emit(
                        "kpi_measurement",
                        {
                            "event_id": str(uuid.uuid5(
                                _KPI_NAMESPACE, f"{app_id}/{kpi}/{start}/{partition}/{revision}"
                            )),
                            "occurred_at": start + window_ms,
                            "kpi": kpi,
                            "window": "hour" if window_ms == 3_600_000 else "minute",
                            "window_start": start,
                            "value": value,
                            "target": target,
                            "sample_size": int(figures[den]),
                            "meets_target": value >= target,
                            "numerator": int(figures[num]),
                            "denominator": int(figures[den]),
                            "source_partition": partition,
                            "revision": revision,
                        },
                    )
                )  # fmt: skip
        return futures

    def forget(self, customer_id: str, learner: Learner) -> None:
        """Erasure: the customer's pending impressions, metrics entries and served list go."""
        learner.forget(customer_id)
        self.pending[f"{self.prefix}:reco:{customer_id}"] = (None, 0)
        self.counts["erased"] += 1

    def save_all(self) -> None:
        """Checkpoint every owned partition now (worker stopping)."""
        for partition, model in sorted(self.models.items()):
            self._release(partition, model.learner)

    def stats(self) -> dict[str, Any]:
        """Figures of the partitions this worker owns now (sums over their learners)."""
        models = [self.models[p] for p in sorted(self.models)]
        per_partition = {str(p): m.learner.stats() for p, m in sorted(self.models.items())}
        summed = {
            key: sum(s[key] for s in per_partition.values())
            for key in (
                "model_updates", "learned_events", "pending_impressions",
                "conversions_from_holdings", "unattributed", "impressions", "clicks",
                "conversions",
            )
        }  # fmt: skip
        digest = sum(m.learner.learned_digest for m in models) & _MASK
        impressions = summed["impressions"]
        return {
            "policy": BanditPolicy.name,
            **summed,
            "learned_digest": f"{digest:016x}",
            "ctr": summed["clicks"] / impressions if impressions else 0.0,
            **self.counts,
            "partitions": sorted(self.models),
            # every owned partition resumed from a checkpoint (no cold start)
            "restored_from_checkpoint": bool(models) and all(m.restored for m in models),
            "partitions_restored": sorted(p for p, m in self.models.items() if m.restored),
            "checkpoints_saved": self.checkpoints.saves,
            "checkpoints_refused": self.checkpoints.refused,
            "checkpoint_bytes": self.checkpoints.last_bytes,
            "first_served_after_s": self.first_served_after_s,
            "by_partition": per_partition,
        }


class _PendingWrites:
    """The part of a Redis pipeline the serving code uses, recording into the pending writes."""

    def __init__(self, pending: dict[str, tuple[str | None, int]]) -> None:
        self.pending = pending

    def set(self, key: str, value: str, ex: int) -> None:
        self.pending[key] = (value, ex)

    def delete(self, key: str) -> None:
        self.pending[key] = (None, 0)


def _settled(future: Any) -> bool:
    """Done and delivered; a failed delivery raises here (the worker stops, nothing is lost)."""
    if not future.done():
        return False
    future.result()
    return True
