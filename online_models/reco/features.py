"""A customer's recommender state (plain JSON, kept in the processor's Faust table) and the
context features the policies score.

Only what the events say is used: birth year, risk profile and segment (customer_registered),
products held (product_holding_changed), the personalisation consent (consent_changed), the mix
of spending categories (transaction) and the customer's own past reactions per product. Nothing
PII-marked is kept. Features are one-hots or shares in [0, 1], so linear models need no scaler.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from online_models.reco.catalogue import BY_ID, eligible_products

State = dict[str, Any]

#: age bands of the features: (upper bound exclusive, name)
AGE_BANDS = ((30, "young"), (50, "mid"), (200, "senior"))
#: spending categories counted (others are ignored); shares of the customer's card payments
TX_CATEGORIES = (
    "groceries", "dining", "travel", "shopping", "utilities", "entertainment", "health",
    "education", "transport", "cash", "transfer", "salary",
)  # fmt: skip
_TX = frozenset(TX_CATEGORIES)


def new_state() -> State:
    return {
        "birth_year": None,
        "risk": None,
        "segment": None,
        # the current account is implicit; everyone holds it
        "held": [],
        "consent": True,  # personalisation consent from onboarding until withdrawn
        "tx": {},
        # catalogue product -> [clicks, impressions without one]: the per-customer posterior's
        # evidence (bounded: one pair per catalogue product)
        "reactions": {},
        # topic -> last offset applied to this customer (exact replay detection)
        "offsets": {},
    }


def year_of(ms: int) -> int:
    return datetime.fromtimestamp(ms / 1000, UTC).year


def age_of(state: Mapping[str, Any], now_ms: int) -> int | None:
    birth_year = state.get("birth_year")
    return None if birth_year is None else year_of(now_ms) - int(birth_year)


def apply_event(state: State, name: str, record: Mapping[str, Any]) -> bool:
    """Update ``state`` from one event; True when a feature changed."""
    if name == "customer_registered":
        before = (state["birth_year"], state["risk"], state["segment"])
        state["birth_year"] = record["birth_year"]
        state["risk"] = record.get("risk_profile")
        state["segment"] = record.get("segment")
        return before != (state["birth_year"], state["risk"], state["segment"])
    if name == "product_holding_changed":
        held = set(state["held"])
        product = record["product_id"]
        if record["change"] == "opened":
            held.add(product)
        else:
            held.discard(product)
        changed = held != set(state["held"])
        state["held"] = sorted(held)
        return changed
    if name == "consent_changed":
        if record["consent"] != "personalisation":
            return False
        changed = bool(state["consent"]) != bool(record["granted"])
        state["consent"] = bool(record["granted"])
        return changed
    if name == "transaction":
        category = record.get("category")
        if category not in _TX:
            return False
        tx = state["tx"]
        tx[category] = tx.get(category, 0) + 1
        return True
    return False


def note_reaction(state: State, product_id: str, positive: bool) -> None:
    # catalogue products only: at most one pair per product, whatever the events name
    if product_id not in BY_ID:
        return
    counts = state["reactions"].setdefault(product_id, [0, 0])
    counts[0 if positive else 1] += 1


def note_click(state: State, product_id: str) -> None:
    """A click on an item whose impression already counted as a miss: turn it into a hit."""
    if product_id not in BY_ID:
        return
    counts = state["reactions"].setdefault(product_id, [0, 0])
    counts[0] += 1
    counts[1] = max(0, counts[1] - 1)


def context_features(state: Mapping[str, Any], now_ms: int) -> dict[str, float]:
    """The policy's context ``x`` for this customer at ``now_ms``."""
    x: dict[str, float] = {}
    age = age_of(state, now_ms)
    if age is not None:
        band = next(name for bound, name in AGE_BANDS if age < bound)
        x[f"age={band}"] = 1.0
    if state.get("risk"):
        x[f"risk={state['risk']}"] = 1.0
    if state.get("segment"):
        x[f"segment={state['segment']}"] = 1.0
    for product in state.get("held", ()):
        x[f"held={product}"] = 1.0
    tx: Mapping[str, int] = state.get("tx", {})
    total = sum(tx.values())
    if total:
        for category, n in tx.items():
            x[f"tx={category}"] = n / total
    for product, (positive, negative) in state.get("reactions", {}).items():
        # a smoothed personal reaction rate in [-0.5, 0.5]: 0 when the customer never saw it
        x[f"liked={product}"] = (positive + 0.5) / (positive + negative + 1.0) - 0.5
    return x


def eligible(state: Mapping[str, Any], now_ms: int) -> list[str]:
    return eligible_products(
        age=age_of(state, now_ms),
        risk_profile=state.get("risk"),
        holdings=state.get("held", ()),
        personalisation_consent=bool(state.get("consent", True)),
    )


def distance(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """L1 distance between two feature dicts (how much the context moved since last served)."""
    return math.fsum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in a.keys() | b.keys())
