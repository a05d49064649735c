"""Recommendation policies: a contextual bandit over River models and two baselines.

Every policy ranks the *eligible* products for a context ``x`` into a list of :class:`Choice`
(product, score, the probability with which the policy picked it at that rank, a reason code)
and learns from labelled impressions. Logging the propensity of every choice is what makes the
lists evaluable offline (:mod:`online_models.reco.ips`).

- :class:`BanditPolicy`: one ``river.linear_model.LogisticRegression`` per product estimates
  P(click | x, position 1); epsilon-greedy per rank (with probability ``epsilon`` a uniformly
  random remaining eligible product, else the best-scored one). Ranking calls only
  ``predict_proba_one``: serving never changes the model.
- :class:`RandomPolicy`: uniform over the eligible products.
- :class:`PopularityPolicy`: products by their smoothed global click-through.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from river import linear_model, optim

from online_models.reco.catalogue import PRODUCT_IDS

Features = Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Choice:
    product_id: str
    score: float
    #: probability that the policy chose this product at this rank, given the ranks before it
    propensity: float
    reason: str


class Policy(Protocol):
    name: str
    #: how many labelled impressions the policy learned (the model's version)
    updates: int

    def rank(
        self, x: Features, eligible: Sequence[str], k: int, rng: random.Random
    ) -> list[Choice]: ...

    def learn(self, x: Features, product_id: str, position: int, clicked: bool) -> None: ...

    def probability(self, x: Features, eligible: Sequence[str], product_id: str) -> float:
        """Probability that ``product_id`` is this policy's first choice (for IPS)."""
        ...


def _position_features(x: Features, position: int) -> dict[str, float]:
    # the click model sees the rank the item was shown at (position bias), scored at rank 1
    return {**x, f"pos={min(position, 5)}": 1.0} if position > 1 else dict(x)


class BanditPolicy:
    """Epsilon-greedy contextual bandit, one River logistic regression per product."""

    name = "river_bandit"

    def __init__(
        self,
        products: Sequence[str] = PRODUCT_IDS,
        *,
        epsilon: float = 0.1,
        learning_rate: float = 0.05,
        l2: float = 0.0,
    ) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"BanditPolicy epsilon={epsilon}: must be within [0, 1]")
        self.epsilon = epsilon
        self.models = {
            p: linear_model.LogisticRegression(
                optimizer=optim.SGD(learning_rate), l2=l2, intercept_lr=learning_rate
            )
            for p in products
        }
        self.updates = 0

    def score(self, x: Features, product_id: str) -> float:
        model = self.models[product_id]
        return float(model.predict_proba_one(x).get(True, 0.0))

    def rank(
        self, x: Features, eligible: Sequence[str], k: int, rng: random.Random
    ) -> list[Choice]:
        scores = {p: self.score(x, p) for p in eligible if p in self.models}
        remaining = sorted(scores, key=lambda p: (-scores[p], p))
        eps = self.epsilon
        out: list[Choice] = []
        while remaining and len(out) < k:
            n = len(remaining)
            best = remaining[0]
            pick = remaining[int(rng.random() * n)] if rng.random() < eps else best
            propensity = eps / n + (1.0 - eps if pick == best else 0.0)
            reason = self._reason(x, pick) if pick == best else "explore"
            out.append(Choice(pick, scores[pick], propensity, reason))
            remaining.remove(pick)
        return out

    def probability(self, x: Features, eligible: Sequence[str], product_id: str) -> float:
        candidates = [p for p in eligible if p in self.models]
        if product_id not in candidates:
            return 0.0
        best = sorted(candidates, key=lambda p: (-self.score(x, p), p))[0]
        eps = self.epsilon
        return eps / len(candidates) + (1.0 - eps if product_id == best else 0.0)

    def learn(self, x: Features, product_id: str, position: int, clicked: bool) -> None:
        model = self.models.get(product_id)
        if model is None:
            return
        model.learn_one(_position_features(x, position), clicked)
        self.updates += 1

    def _reason(self, x: Features, product_id: str) -> str:
        # the context feature that adds most to the product's score: an auditable reason code
        weights = self.models[product_id].weights
        best, contribution = "", 0.0
        for feature, value in x.items():
            c = weights.get(feature, 0.0) * value
            if c > contribution:
                best, contribution = feature, c
        return f"model:{best}" if best else "model"


class RandomPolicy:
    """Uniformly random eligible products (the floor any learner must beat)."""

    name = "random"

    def __init__(self) -> None:
        self.updates = 0

    def rank(
        self, x: Features, eligible: Sequence[str], k: int, rng: random.Random
    ) -> list[Choice]:
        remaining = list(eligible)
        out: list[Choice] = []
        while remaining and len(out) < k:
            n = len(remaining)
            pick = remaining.pop(int(rng.random() * n))
            out.append(Choice(pick, 1.0 / n, 1.0 / n, "random"))
        return out

    def probability(self, x: Features, eligible: Sequence[str], product_id: str) -> float:
        return 1.0 / len(eligible) if product_id in eligible else 0.0

    def learn(self, x: Features, product_id: str, position: int, clicked: bool) -> None:
        self.updates += 1


class PopularityPolicy:
    """Eligible products by global click-through (Beta(1, 10) prior), the same for everyone."""

    name = "popularity"

    def __init__(self) -> None:
        self.clicks: dict[str, int] = {}
        self.impressions: dict[str, int] = {}
        self.updates = 0

    def score(self, product_id: str) -> float:
        return (self.clicks.get(product_id, 0) + 1.0) / (self.impressions.get(product_id, 0) + 11.0)

    def rank(
        self, x: Features, eligible: Sequence[str], k: int, rng: random.Random
    ) -> list[Choice]:
        ranked = sorted(eligible, key=lambda p: (-self.score(p), p))[:k]
        return [Choice(p, self.score(p), 1.0, "popular") for p in ranked]

    def probability(self, x: Features, eligible: Sequence[str], product_id: str) -> float:
        if not eligible:
            return 0.0
        return 1.0 if product_id == min(eligible, key=lambda p: (-self.score(p), p)) else 0.0

    def learn(self, x: Features, product_id: str, position: int, clicked: bool) -> None:
        self.impressions[product_id] = self.impressions.get(product_id, 0) + 1
        if clicked:
            self.clicks[product_id] = self.clicks.get(product_id, 0) + 1
        self.updates += 1


def make_policy(name: str, *, epsilon: float = 0.1, learning_rate: float = 0.05) -> Policy:
    if name == BanditPolicy.name:
        return BanditPolicy(epsilon=epsilon, learning_rate=learning_rate)
    if name == RandomPolicy.name:
        return RandomPolicy()
    if name == PopularityPolicy.name:
        return PopularityPolicy()
    raise ValueError(f"unknown recommendation policy {name!r}")
