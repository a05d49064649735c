"""The bandit's per-customer layer: a customer's own clicks and misses move their ranking away
from the contextual model, logged propensities stay the true probabilities with a history, the
evidence is bounded per customer, a late click re-serves the list, and on the closed-loop
simulator the layer beats the contextual model alone."""

from __future__ import annotations

import math
import random

from cxstream.simulate.config import SimulationConfig
from cxstream.simulate.loop import ClosedLoop
from online_models.reco import features as feats
from online_models.reco import serving
from online_models.reco.catalogue import PRODUCT_IDS
from online_models.reco.ips import wilson_interval
from online_models.reco.local import LocalRecommender
from online_models.reco.policy import BanditPolicy, ContextualPolicy, make_policy
from tests.unit.test_reco_core import START_MS, _planted_feedback

YOUNG = {"age=young": 1.0}


def _trained(epsilon: float) -> BanditPolicy:
    policy = BanditPolicy(epsilon=epsilon, learning_rate=0.1)
    _planted_feedback(policy, 6000, seed=1)  # young customers click card.cashback
    return policy


def test_own_clicks_outrank_the_contextual_model() -> None:
    policy = _trained(epsilon=0.0)
    rng = random.Random(1)
    assert policy.rank(YOUNG, PRODUCT_IDS, 1, rng)[0].product_id == "card.cashback"
    history = {"fx.wallet": [3, 1], "card.cashback": [0, 6]}
    top = policy.rank(YOUNG, PRODUCT_IDS, 3, rng, history)
    assert top[0].product_id == "fx.wallet"
    assert top[0].reason == "history:clicked"
    assert top[0].score > policy.prior(YOUNG, "fx.wallet")
    # the contextual model alone ignores the history
    contextual = ContextualPolicy(epsilon=0.0, learning_rate=0.1)
    _planted_feedback(contextual, 6000, seed=1)
    ranked = contextual.rank(YOUNG, PRODUCT_IDS, 1, rng, history)
    assert ranked[0].product_id == "card.cashback"


def test_misses_push_a_product_down_and_unseen_ones_up() -> None:
    policy = _trained(epsilon=0.0)
    rng = random.Random(2)
    misses = {"card.cashback": [0, 20]}
    ranked = [c.product_id for c in policy.rank(YOUNG, PRODUCT_IDS, len(PRODUCT_IDS), rng, misses)]
    assert ranked[0] != "card.cashback"
    assert policy.score(YOUNG, "card.cashback", misses) < policy.score(YOUNG, "card.cashback")
    # the less a customer has seen a product, the larger its exploration bonus (in units of
    # the Bernoulli spread of its posterior mean)
    bonuses = []
    for seen in ([0, 0], [1, 3], [10, 30]):
        mean, key = policy._posterior(YOUNG, "savings.flex", {"savings.flex": seen})
        bonuses.append((key - mean) / math.sqrt(mean * (1.0 - mean)))
    assert bonuses == sorted(bonuses, reverse=True)
    assert bonuses[-1] > 0


def test_propensities_with_a_history_are_the_true_probabilities() -> None:
    policy = _trained(epsilon=0.3)
    rng = random.Random(4)
    history = {"fx.wallet": [2, 2], "card.cashback": [0, 5], "savings.flex": [1, 0]}
    n = 20_000
    firsts = [policy.rank(YOUNG, PRODUCT_IDS, 2, rng, history)[0] for _ in range(n)]
    for product in PRODUCT_IDS:
        expected = policy.probability(YOUNG, PRODUCT_IDS, product, history)
        observed = sum(c.product_id == product for c in firsts) / n
        assert abs(observed - expected) < 0.015
        assert {c.propensity for c in firsts if c.product_id == product} == {expected}
    assert policy.probability(YOUNG, PRODUCT_IDS, "not.a.product", history) == 0.0


def test_per_customer_evidence_is_bounded_by_the_catalogue() -> None:
    state = feats.new_state()
    rng = random.Random(5)
    for i in range(500):
        product = rng.choice([*PRODUCT_IDS, f"unknown.{i}"])
        feats.note_reaction(state, product, False)
        if i % 7 == 0:
            feats.note_click(state, product)
    assert set(state["reactions"]) <= set(PRODUCT_IDS)
    for clicks, misses in state["reactions"].values():
        assert clicks >= 0
        assert misses >= 0


def test_a_click_after_the_impression_re_serves_the_list() -> None:
    state = feats.new_state()
    feats.apply_event(
        state, "customer_registered",
        {"birth_year": 1990, "risk_profile": "balanced", "segment": "mass"},
    )  # fmt: skip
    for _ in range(4):
        feats.note_reaction(state, "savings.flex", False)
    x = feats.context_features(state, START_MS)
    eligible = feats.eligible(state, START_MS)
    served = serving.recommend(
        BanditPolicy(), "C1", x, eligible, k=3, now_ms=START_MS, rng=random.Random(6),
        model_version="v", history=state["reactions"],
    )  # fmt: skip
    serving.remember_served(state, served, x, eligible, 0)
    options = {"feature_threshold": 0.5, "model_threshold": 1000}
    assert not serving.needs_serving(state, x, eligible, 0, **options)
    feats.note_click(state, "savings.flex")
    moved = feats.context_features(state, START_MS)
    assert feats.distance(moved, x) < options["feature_threshold"]  # the context barely moved
    assert serving.needs_serving(state, moved, eligible, 0, **options)


def _closed_loop_ctr(policy_name: str, seed: int) -> tuple[int, int]:
    config = SimulationConfig(
        start_ms=START_MS, seed=seed, customers=400, duration_ms=None, max_events=1
    )
    loop = ClosedLoop(config, shown=1)
    rec = LocalRecommender(make_policy(policy_name), seed=seed)
    for event in loop.registrations():
        rec.apply(event.name, event.record)
    impressions = clicks = 0
    for customer in loop.visits(12_000):
        for event in loop.react(customer, rec.lookup(customer.customer_id)):
            rec.apply(event.name, event.record)
            if event.name == "recommendation_feedback":
                impressions += event.record["action"] == "impression"
                clicks += event.record["action"] == "click"
    return clicks, impressions


def test_the_per_customer_layer_beats_the_contextual_model_alone() -> None:
    personal = _closed_loop_ctr("river_bandit", seed=2)
    contextual = _closed_loop_ctr("river_contextual", seed=2)
    # same visits (seeded), both served on (nearly) every visit
    assert min(personal[1], contextual[1]) > 11_000
    assert wilson_interval(*personal)[0] > wilson_interval(*contextual)[1]
