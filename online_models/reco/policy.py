"""Recommendation policies: a contextual bandit over River models and two baselines.

Every policy ranks the *eligible* products for a context ``x`` (and, optionally, the customer's
own reaction ``history``) into a list of :class:`Choice` (product, score, the probability with
which the policy picked it at that rank, a reason code) and learns from labelled impressions.
Logging the propensity of every choice is what makes the lists evaluable offline
(:mod:`online_models.reco.ips`).

- :class:`BanditPolicy`: one ``river.linear_model.LogisticRegression`` per product estimates
  P(click | x, position 1) from everyone's feedback; that estimate is the *prior* of a
  per-(customer, product) Beta posterior updated by the customer's own impressions and clicks
  (the hidden needs are only partly predictable from the profile, so the customer's own
  reactions are the lever). Lists are ranked by an upper confidence bound of that posterior
  (deterministic, so directed exploration costs no propensity), then epsilon-greedy per rank
  (with probability ``epsilon`` a uniformly random remaining eligible product): the logged
  propensity is the exact probability of the choice. Ranking calls only ``predict_proba_one``:
  serving never changes the model.
- :class:`ContextualPolicy`: the same contextual model without the per-customer layer.
- :class:`RandomPolicy`: uniform over the eligible products.
- :class:`PopularityPolicy`: products by their smoothed global click-through.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from river import linear_model, optim

from online_models.reco.catalogue import PRODUCT_IDS

Features = Mapping[str, float]
#: a customer's reactions per product: ``[clicks or conversions, impressions without one]``
#: (``features.new_state()["reactions"]``, kept in the processor's per-customer table)
History = Mapping[str, Sequence[int]]


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
        self, x: Features, eligible: Sequence[str], k: int, rng: random.Random,
        history: History | None = None,
    ) -> list[Choice]: ...  # fmt: skip

    def learn(self, x: Features, product_id: str, position: int, clicked: bool) -> None: ...

    def probability(
        self, x: Features, eligible: Sequence[str], product_id: str,
        history: History | None = None,
    ) -> float:  # fmt: skip
        """Probability that ``product_id`` is this policy's first choice (for IPS)."""
        ...


def _position_features(x: Features, position: int) -> dict[str, float]:
    # the click model sees the rank the item was shown at (position bias), scored at rank 1
    return {**x, f"pos={min(position, 5)}": 1.0} if position > 1 else dict(x)


class BanditPolicy:
    """Per-customer Beta posteriors with a River contextual prior; UCB + epsilon-greedy.

    For customer history ``(c, m)`` of a product (clicks, impressions without a click) and the
    contextual model's click probability ``q``, the posterior is
    ``Beta(s*q + c, s*(1-q) + m)`` with ``s = prior_strength`` pseudo-impressions; its mean is
    the item's score, mean + ``optimism`` standard deviations its rank key. Without history
    (``history=None``, or a customer never shown the product) that is the contextual model alone.
    """

    name = "river_bandit"

    def __init__(
        self,
        products: Sequence[str] = PRODUCT_IDS,
        *,
        epsilon: float = 0.1,
        learning_rate: float = 0.05,
        l2: float = 0.0,
        prior_strength: float = 4.0,
        optimism: float = 1.0,
    ) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"BanditPolicy epsilon={epsilon}: must be within [0, 1]")
        if prior_strength <= 0.0:
            raise ValueError(f"BanditPolicy prior_strength={prior_strength}: must be > 0")
        self.epsilon = epsilon
        self.prior_strength = prior_strength
        self.optimism = optimism
        self.models = {
            p: linear_model.LogisticRegression(
                optimizer=optim.SGD(learning_rate), l2=l2, intercept_lr=learning_rate
            )
            for p in products
        }
        self.updates = 0

    def prior(self, x: Features, product_id: str) -> float:
        """The contextual model's P(click | x) at rank 1 (pure inference)."""
        model = self.models[product_id]
        return float(model.predict_proba_one(x).get(True, 0.0))

    def _posterior(
        self, x: Features, product_id: str, history: History | None
    ) -> tuple[float, float]:
        """(mean, rank key) of the customer's posterior click-through of ``product_id``."""
        q = self.prior(x, product_id)
        seen = history.get(product_id) if history else None
        if seen is None:
            clicks = misses = 0
        else:
            clicks, misses = int(seen[0]), int(seen[1])
        n = self.prior_strength + clicks + misses
        mean = (self.prior_strength * q + clicks) / n
        return mean, mean + self.optimism * math.sqrt(mean * (1.0 - mean) / (n + 1.0))

    def score(self, x: Features, product_id: str, history: History | None = None) -> float:
        return self._posterior(x, product_id, history)[0]

    def _ranked(
        self, x: Features, eligible: Sequence[str], history: History | None
    ) -> tuple[dict[str, float], list[str]]:
        posts = {p: self._posterior(x, p, history) for p in eligible if p in self.models}
        ranked = sorted(posts, key=lambda p: (-posts[p][1], p))
        return {p: mean for p, (mean, _key) in posts.items()}, ranked

    def rank(
        self, x: Features, eligible: Sequence[str], k: int, rng: random.Random,
        history: History | None = None,
    ) -> list[Choice]:  # fmt: skip
        scores, remaining = self._ranked(x, eligible, history)
        eps = self.epsilon
        out: list[Choice] = []
        while remaining and len(out) < k:
            n = len(remaining)
            best = remaining[0]
            pick = remaining[int(rng.random() * n)] if rng.random() < eps else best
            propensity = eps / n + (1.0 - eps if pick == best else 0.0)
            reason = self._reason(x, pick, history) if pick == best else "explore"
            out.append(Choice(pick, scores[pick], propensity, reason))
            remaining.remove(pick)
        return out

    def probability(
        self, x: Features, eligible: Sequence[str], product_id: str,
        history: History | None = None,
    ) -> float:  # fmt: skip
        _scores, ranked = self._ranked(x, eligible, history)
        if product_id not in ranked:
            return 0.0
        eps = self.epsilon
        return eps / len(ranked) + (1.0 - eps if product_id == ranked[0] else 0.0)

    def learn(self, x: Features, product_id: str, position: int, clicked: bool) -> None:
        model = self.models.get(product_id)
        if model is None:
            return
        model.learn_one(_position_features(x, position), clicked)
        self.updates += 1

    def _reason(self, x: Features, product_id: str, history: History | None) -> str:
        seen = history.get(product_id) if history else None
        if seen is not None and seen[0] > 0:
            return "history:clicked"
        if seen is None or seen[0] + seen[1] == 0:
            # never shown to this customer: the contextual model's reason
            return self._model_reason(x, product_id)
        return "history:unexplored"

    def _model_reason(self, x: Features, product_id: str) -> str:
        # the context feature that adds most to the product's score: an auditable reason code
        weights = self.models[product_id].weights
        best, contribution = "", 0.0
        for feature, value in x.items():
            c = weights.get(feature, 0.0) * value
            if c > contribution:
                best, contribution = feature, c
        return f"model:{best}" if best else "model"


class ContextualPolicy(BanditPolicy):
    """The contextual model alone (no per-customer posterior): the bandit before the
    per-customer layer, kept as the benchmark's reference for what that layer adds."""

    name = "river_contextual"

    def _posterior(
        self, x: Features, product_id: str, history: History | None
    ) -> tuple[float, float]:
        q = self.prior(x, product_id)
        return q, q

    def _reason(self, x: Features, product_id: str, history: History | None) -> str:
        return self._model_reason(x, product_id)


class RandomPolicy:
    """Uniformly random eligible products (the floor any learner must beat)."""

    name = "random"

    def __init__(self) -> None:
        self.updates = 0

    def rank(
        self, x: Features, eligible: Sequence[str], k: int, rng: random.Random,
        history: History | None = None,
    ) -> list[Choice]:  # fmt: skip
        remaining = list(eligible)
        out: list[Choice] = []
        while remaining and len(out) < k:
            n = len(remaining)
            pick = remaining.pop(int(rng.random() * n))
            out.append(Choice(pick, 1.0 / n, 1.0 / n, "random"))
        return out

    def probability(
        self, x: Features, eligible: Sequence[str], product_id: str,
        history: History | None = None,
    ) -> float:  # fmt: skip
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
        self, x: Features, eligible: Sequence[str], k: int, rng: random.Random,
        history: History | None = None,
    ) -> list[Choice]:  # fmt: skip
        ranked = sorted(eligible, key=lambda p: (-self.score(p), p))[:k]
        return [Choice(p, self.score(p), 1.0, "popular") for p in ranked]

    def probability(
        self, x: Features, eligible: Sequence[str], product_id: str,
        history: History | None = None,
    ) -> float:  # fmt: skip
        if not eligible:
            return 0.0
        return 1.0 if product_id == min(eligible, key=lambda p: (-self.score(p), p)) else 0.0

    def learn(self, x: Features, product_id: str, position: int, clicked: bool) -> None:
        self.impressions[product_id] = self.impressions.get(product_id, 0) + 1
        if clicked:
            self.clicks[product_id] = self.clicks.get(product_id, 0) + 1
        self.updates += 1


def make_policy(
    name: str, *, epsilon: float = 0.1, learning_rate: float = 0.05,
    prior_strength: float = 4.0, optimism: float = 1.0,
) -> Policy:  # fmt: skip
    if name == BanditPolicy.name:
        return BanditPolicy(
            epsilon=epsilon, learning_rate=learning_rate, prior_strength=prior_strength,
            optimism=optimism,
        )  # fmt: skip
    if name == ContextualPolicy.name:
        return ContextualPolicy(epsilon=epsilon, learning_rate=learning_rate)
    if name == RandomPolicy.name:
        return RandomPolicy()
    if name == PopularityPolicy.name:
        return PopularityPolicy()
    raise ValueError(f"unknown recommendation policy {name!r}")
