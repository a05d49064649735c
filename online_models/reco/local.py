"""The recommender in one process, without Kafka, Redis or Faust: the same state updates,
attribution join, learning and serving as :mod:`processors.reco`, driven event by event.

Used by the benchmark to compare policies on the closed-loop simulator with the same seed, and by
unit tests. ``served`` holds what the processor would have written to Redis.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from online_models.reco import features as feats
from online_models.reco import serving
from online_models.reco.learner import Learner
from online_models.reco.policy import Policy

TOPIC = "local"


class LocalRecommender:
    def __init__(
        self,
        policy: Policy,
        *,
        k: int = 5,
        window_ms: int = 1_800_000,
        feature_threshold: float = 0.5,
        model_threshold: int = 1000,
        seed: int = 0,
    ) -> None:
        self.learner = Learner(policy, window_ms=window_ms)
        self.k = k
        self.feature_threshold = feature_threshold
        self.model_threshold = model_threshold
        self.rng = random.Random(f"{seed}:serve")
        self.states: dict[str, dict[str, Any]] = {}
        self.served: dict[str, dict[str, Any]] = {}
        self.offset = 0
        #: every list served, for eligibility audits: (state snapshot facts, list)
        self.audit: list[tuple[int | None, str | None, list[str], bool, list[str]]] = []

    def _state(self, customer_id: str) -> dict[str, Any]:
        state = self.states.get(customer_id)
        if state is None:
            state = self.states[customer_id] = feats.new_state()
        return state

    def apply(self, name: str, record: Mapping[str, Any]) -> None:
        self.offset += 1
        cid = record["customer_id"]
        state = self._state(cid)
        t = record["occurred_at"]
        learner = self.learner
        learner.metrics.active(t, cid)
        if name == "recommendation_feedback":
            learner.feedback(TOPIC, 0, self.offset, record, lambda c: self.context(c, t))
            action = record["action"]
            if action == "impression":
                feats.note_reaction(state, record["product_id"], False)
                served = state.get("served")
                if served is not None and served["id"] == record["recommendation_id"]:
                    served["shown"] = True
            elif action == "click":
                feats.note_click(state, record["product_id"])
        else:
            feats.apply_event(state, name, record)
            if name == "product_holding_changed":
                learner.holding_changed(TOPIC, 0, self.offset, record)
        self.maybe_serve(cid, t)

    def context(self, customer_id: str, now_ms: int) -> dict[str, float]:
        return feats.context_features(self._state(customer_id), now_ms)

    def maybe_serve(self, customer_id: str, now_ms: int) -> None:
        state = self._state(customer_id)
        x = feats.context_features(state, now_ms)
        eligible = feats.eligible(state, now_ms)
        policy = self.learner.policy
        if not serving.needs_serving(
            state, x, eligible, policy.updates,
            feature_threshold=self.feature_threshold, model_threshold=self.model_threshold,
        ):  # fmt: skip
            return
        if not eligible:
            self.served.pop(customer_id, None)
            state.pop("served", None)
            return
        served = serving.recommend(
            policy, customer_id, x, eligible, k=self.k, now_ms=now_ms, rng=self.rng,
            model_version=f"{policy.name}-{policy.updates}", history=state["reactions"],
        )  # fmt: skip
        serving.remember_served(state, served, x, eligible, policy.updates)
        self.served[customer_id] = served
        products = [item["product_id"] for item in served["items"]]
        self.learner.metrics.served(now_ms, customer_id, products)
        self.audit.append(
            (feats.age_of(state, now_ms), state["risk"], list(state["held"]),
             bool(state["consent"]), products)
        )  # fmt: skip

    def lookup(self, customer_id: str) -> dict[str, Any] | None:
        return self.served.get(customer_id)
