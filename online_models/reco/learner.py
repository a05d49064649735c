"""The learning side of the recommender: feedback joined into labels, learned exactly once.

Attribution, in event time (``occurred_at``): an impression waits up to ``window_ms`` for a
click or a conversion (a ``convert`` feedback or a ``product_holding_changed`` naming the list);
the first one makes it a positive example, a ``dismiss`` or the end of the window (when the
partition's event-time watermark passes it) a negative one. The context learned is the one
captured when the impression arrived.

Exactly once: the learner remembers, per ``topic:partition``, the last offset it applied, and
:meth:`Learner.already_applied` tells the processor to skip older ones (replays after a crash).
All of it (models, pending impressions, offsets, counters) is pickled together by
:mod:`online_models.reco.checkpoint`, so a restored learner resumes exactly where its offsets say.
``learned_events`` and ``learned_digest`` (sum of 64-bit hashes of the event ids applied) let a
test check that no feedback event was applied twice or lost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from online_models.reco.evaluation import Prequential
from online_models.reco.policy import Features, Policy

_MASK = (1 << 64) - 1


def event_hash(event_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big")


@dataclass(slots=True)
class PendingImpression:
    customer_id: str
    x: Features
    position: int
    t: int


class Learner:
    def __init__(self, policy: Policy, *, window_ms: int, metrics: Prequential | None = None):
        self.policy = policy
        self.window_ms = window_ms
        self.metrics = metrics or Prequential()
        #: partition -> (recommendation_id, product_id) -> impression waiting for its label
        self.pending: dict[int, dict[tuple[str, str], PendingImpression]] = {}
        #: partition -> (recommendation_id, product_id) -> event time of its positive label
        self.positive: dict[int, dict[tuple[str, str], int]] = {}
        #: partition -> highest occurred_at applied (event-time watermark)
        self.watermark: dict[int, int] = {}
        #: "topic:partition" -> last offset applied
        self.offsets: dict[str, int] = {}
        self.learned_events = 0
        self.learned_digest = 0
        self.conversions_from_holdings = 0
        self.unattributed = 0

    # -- exactly once ---------------------------------------------------------------------------

    def already_applied(self, topic: str, partition: int, offset: int) -> bool:
        return offset <= self.offsets.get(f"{topic}:{partition}", -1)

    def applied_offset(self, topic: str, partition: int) -> int:
        return self.offsets.get(f"{topic}:{partition}", -1)

    def skip(self, topic: str, partition: int, offset: int) -> None:
        """Count an event as applied without learning from it (an erased customer's replay):
        replay detection and checkpoint progress stay exact, the models never see it."""
        self._mark(topic, partition, offset)

    def _mark(self, topic: str, partition: int, offset: int) -> None:
        key = f"{topic}:{partition}"
        if offset > self.offsets.get(key, -1):
            self.offsets[key] = offset

    # -- feedback -------------------------------------------------------------------------------

    def feedback(
        self,
        topic: str,
        partition: int,
        offset: int,
        record: Mapping[str, Any],
        context: Callable[[str], Features],
    ) -> None:
        """Apply one ``recommendation_feedback`` event (the caller skipped applied offsets)."""
        t = record["occurred_at"]
        key = (record["recommendation_id"], record["product_id"])
        action = record["action"]
        pending = self.pending.setdefault(partition, {})
        metrics = self.metrics
        if action == "impression":
            if key not in pending and key not in self.positive.get(partition, {}):
                pending[key] = PendingImpression(
                    record["customer_id"], context(record["customer_id"]),
                    record.get("position") or 1, t,
                )  # fmt: skip
                metrics.impression(t, key[0])
        elif action in ("click", "convert"):
            self._positive(partition, key, t)
            if action == "convert":
                metrics.conversion(t)
        elif action == "dismiss":
            item = pending.pop(key, None)
            if item is not None:
                self.policy.learn(item.x, key[1], item.position, False)
        self._mark(topic, partition, offset)
        self.learned_events += 1
        self.learned_digest = (self.learned_digest + event_hash(record["event_id"])) & _MASK
        self._advance(partition, t)

    def holding_changed(
        self, topic: str, partition: int, offset: int, record: Mapping[str, Any]
    ) -> None:
        """A product opened because of a list is a conversion of that list's item."""
        rec_id = record.get("recommendation_id")
        if rec_id and record["change"] == "opened":
            key = (rec_id, record["product_id"])
            positive = self.positive.get(partition, {})
            if key not in positive or key in self.pending.get(partition, {}):
                self.conversions_from_holdings += 1
            self._positive(partition, key, record["occurred_at"])
        self._mark(topic, partition, offset)

    def _positive(self, partition: int, key: tuple[str, str], t: int) -> None:
        item = self.pending.get(partition, {}).pop(key, None)
        if item is not None:
            self.policy.learn(item.x, key[1], item.position, True)
            self.metrics.click(t, key[0])
            self.positive.setdefault(partition, {})[key] = t
        elif key not in self.positive.get(partition, {}):
            self.unattributed += 1

    def _advance(self, partition: int, t: int) -> None:
        if t <= self.watermark.get(partition, -1):
            return
        self.watermark[partition] = t
        horizon = t - self.window_ms
        pending = self.pending.get(partition)
        if pending:
            # insertion order is (nearly) event-time order: stop at the first one still open
            expired = []
            for key, item in pending.items():
                if item.t >= horizon:
                    break
                expired.append(key)
            for key in expired:
                item = pending.pop(key)
                self.policy.learn(item.x, key[1], item.position, False)
        positive = self.positive.get(partition)
        if positive:
            for key in [k for k, at in positive.items() if at < horizon - self.window_ms]:
                del positive[key]

    # -- erasure --------------------------------------------------------------------------------

    def forget(self, customer_id: str) -> int:
        """Drop every pending impression (with its context) of ``customer_id`` and their
        metrics entries; returns how many impressions. Afterwards nothing the learner pickles
        names the customer (labels learned before are in the model weights, which name no one).
        """
        dropped = 0
        for pending in self.pending.values():
            for key in [k for k, item in pending.items() if item.customer_id == customer_id]:
                del pending[key]
                dropped += 1
        self.metrics.forget(customer_id)
        return dropped

    def stats(self) -> dict[str, Any]:
        return {
            "policy": self.policy.name,
            "model_updates": self.policy.updates,
            "learned_events": self.learned_events,
            "learned_digest": f"{self.learned_digest:016x}",
            "pending_impressions": sum(map(len, self.pending.values())),
            "conversions_from_holdings": self.conversions_from_holdings,
            "unattributed": self.unattributed,
            **self.metrics.snapshot(),
        }
