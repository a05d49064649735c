"""Serving: when a customer's list is recomputed, and the list itself (eligible products only).

A list is (re)computed when the customer has none, when their context moved by at least
``feature_threshold`` (L1) or their eligible set changed, when the model learned at least
``model_threshold`` labelled impressions since the list was made, when the list has been shown
(so the next visit gets a fresh draw, with fresh exploration), or when the customer clicked or
converted since (a click usually arrives after the impression that already re-served the list,
and it is the strongest evidence the per-customer posterior gets). Ranking is pure inference.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from typing import Any

from online_models.reco import features as feats
from online_models.reco.policy import History, Policy


def needs_serving(
    state: Mapping[str, Any],
    x: Mapping[str, float],
    eligible: list[str],
    model_updates: int,
    *,
    feature_threshold: float,
    model_threshold: int,
) -> bool:
    served = state.get("served")
    if served is None:
        return bool(eligible)
    if served.get("shown") or served["eligible"] != eligible:
        return True
    if served.get("positives", 0) != positives(state):
        return True
    if model_updates - served["updates"] >= model_threshold:
        return True
    return feats.distance(x, served["x"]) >= feature_threshold


def positives(state: Mapping[str, Any]) -> int:
    """The customer's clicks and conversions on served products so far."""
    return sum(int(counts[0]) for counts in state.get("reactions", {}).values())


def recommend(
    policy: Policy,
    customer_id: str,
    x: Mapping[str, float],
    eligible: list[str],
    *,
    k: int,
    now_ms: int,
    rng: random.Random,
    model_version: str,
    history: History | None = None,
) -> dict[str, Any]:
    """The served list (the Redis JSON plus the audit fields of the ``recommendation`` event);
    ``history`` is the customer's reactions per product (``state["reactions"]``)."""
    choices = policy.rank(x, eligible, k, rng, history)
    return {
        "recommendation_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "customer_id": customer_id,
        "items": [
            {
                "product_id": c.product_id,
                "score": round(c.score, 6),
                "propensity": c.propensity,
                "reason": c.reason,
            }
            for c in choices
        ],
        "policy": policy.name,
        "model_version": model_version,
        "served_at": now_ms,
        "explored": any(c.reason == "explore" for c in choices),
    }


def remember_served(
    state: dict[str, Any], served: Mapping[str, Any], x: Mapping[str, float], eligible: list[str],
    model_updates: int,
) -> None:  # fmt: skip
    state["served"] = {
        "id": served["recommendation_id"],
        "x": dict(x),
        "eligible": list(eligible),
        "updates": model_updates,
        "shown": False,
        "positives": positives(state),
    }
