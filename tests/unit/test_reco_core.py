"""Recommender core without services: eligibility, learning a planted preference, IPS on
synthetic logs, checkpoint round trip without double learning, eligibility over a whole run."""

from __future__ import annotations

import random

from cxstream.simulate.catalogue import PRODUCTS as SIM_PRODUCTS
from cxstream.simulate.config import SimulationConfig
from cxstream.simulate.loop import ClosedLoop
from online_models.reco import checkpoint
from online_models.reco.catalogue import BY_ID, PRODUCT_IDS, eligible_products
from online_models.reco.ips import LoggedDecision, ips_estimate, wilson_interval
from online_models.reco.learner import Learner, event_hash
from online_models.reco.local import LocalRecommender
from online_models.reco.policy import BanditPolicy, RandomPolicy

START_MS = 1_780_000_000_000


def test_catalogue_matches_the_simulated_bank() -> None:
    assert {p.product_id: p.product_type for p in SIM_PRODUCTS} == {
        p: BY_ID[p].product_type for p in PRODUCT_IDS
    }


def test_eligibility_rules() -> None:
    everything = eligible_products(
        age=40, risk_profile="growth", holdings=(), personalisation_consent=True
    )
    assert set(everything) == set(PRODUCT_IDS)
    assert (
        eligible_products(age=40, risk_profile="growth", holdings=(), personalisation_consent=False)
        == []
    )
    young = eligible_products(
        age=19,
        risk_profile="conservative",
        holdings=("savings.flex",),
        personalisation_consent=True,
    )
    assert "loan.personal" not in young  # min age 21
    assert "mortgage.fixed" not in young
    assert "fund.balanced" not in young  # risk profile below 'balanced'
    assert "savings.flex" not in young  # already held
    assert "card.cashback" in young
    assert "loan.personal" not in eligible_products(
        age=40, risk_profile="growth", holdings=("mortgage.fixed",), personalisation_consent=True
    )
    assert (
        eligible_products(age=None, risk_profile=None, holdings=(), personalisation_consent=True)
        == []
    )


def _planted_feedback(policy: BanditPolicy, n: int, seed: int) -> None:
    """Young customers click card.cashback, seniors deposit.12m; other products rarely."""
    rng = random.Random(seed)
    for _ in range(n):
        young = rng.random() < 0.5
        x = {"age=young" if young else "age=senior": 1.0}
        product = rng.choice(PRODUCT_IDS)
        liked = "card.cashback" if young else "deposit.12m"
        policy.learn(x, product, 1, rng.random() < (0.6 if product == liked else 0.05))


def test_bandit_learns_a_planted_preference() -> None:
    policy = BanditPolicy(epsilon=0.0, learning_rate=0.1)
    _planted_feedback(policy, 6000, seed=1)
    rng = random.Random(2)
    assert policy.rank({"age=young": 1.0}, PRODUCT_IDS, 1, rng)[0].product_id == "card.cashback"
    assert policy.rank({"age=senior": 1.0}, PRODUCT_IDS, 1, rng)[0].product_id == "deposit.12m"
    # greedy choice with epsilon 0: propensity 1
    assert policy.rank({"age=young": 1.0}, PRODUCT_IDS, 3, rng)[0].propensity == 1.0


def test_exploration_propensities_are_the_true_probabilities() -> None:
    policy = BanditPolicy(epsilon=0.3)
    _planted_feedback(policy, 2000, seed=3)
    rng = random.Random(4)
    x = {"age=young": 1.0}
    n = 20_000
    firsts = [policy.rank(x, PRODUCT_IDS, 2, rng)[0] for _ in range(n)]
    for product in PRODUCT_IDS:
        observed = sum(c.product_id == product for c in firsts) / n
        assert abs(observed - policy.probability(x, PRODUCT_IDS, product)) < 0.015
        logged = {c.propensity for c in firsts if c.product_id == product}
        assert logged == {policy.probability(x, PRODUCT_IDS, product)}


def test_ips_estimates_a_new_policy_from_uniform_logs() -> None:
    rng = random.Random(5)
    rates = {p: 0.02 + 0.04 * i for i, p in enumerate(PRODUCT_IDS)}  # best: the last product
    best = PRODUCT_IDS[-1]
    logs = []
    for _ in range(40_000):
        product = rng.choice(PRODUCT_IDS)
        reward = 1.0 if rng.random() < rates[product] else 0.0
        logs.append(LoggedDecision({}, PRODUCT_IDS, product, 1 / len(PRODUCT_IDS), reward))
    estimate = ips_estimate(logs, lambda d: 1.0 if d.product_id == best else 0.0)
    assert estimate.low <= rates[best] <= estimate.high
    assert abs(estimate.snips - rates[best]) < 0.03
    uniform = ips_estimate(logs, lambda d: 1 / len(PRODUCT_IDS))
    mean = sum(rates.values()) / len(rates)
    assert uniform.low <= mean <= uniform.high


def test_wilson_interval_contains_the_rate() -> None:
    low, high = wilson_interval(30, 100)
    assert low < 0.3 < high
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _fb(event_id: str, t: int, cid: str, rec: str, product: str, action: str) -> dict[str, object]:
    return {
        "event_id": event_id, "occurred_at": t, "customer_id": cid, "recommendation_id": rec,
        "product_id": product, "action": action, "position": 1,
    }  # fmt: skip


def _feedback_stream(n: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    out = []
    t = START_MS
    for i in range(n):
        t += 1000
        rec = f"r{i // 3}"
        product = PRODUCT_IDS[i % len(PRODUCT_IDS)]
        action = "impression" if i % 3 != 2 or rng.random() < 0.5 else "click"
        out.append(_fb(f"e{i}", t, "C1", rec, product, action))
    return out


def test_checkpoint_round_trip_skips_what_it_learned() -> None:
    events = _feedback_stream(3000, seed=6)
    context = {"age=young": 1.0}

    def run(learner: Learner, offsets: range) -> None:
        for offset in offsets:
            if not learner.already_applied("fb", 0, offset):
                learner.feedback("fb", 0, offset, events[offset], lambda _c: context)

    whole = Learner(BanditPolicy(epsilon=0.1), window_ms=60_000)
    run(whole, range(len(events)))

    saver = checkpoint.PartitionCheckpoints(
        checkpoint.MemoryCheckpointStore(), "ck", interval_seconds=0
    )
    first = Learner(BanditPolicy(epsilon=0.1), window_ms=60_000)
    run(first, range(1800))
    assert saver.save(0, first)
    run(first, range(1800, 2200))  # learned, then "crashed" before the next checkpoint
    restored = saver.load(0)
    assert restored is not None
    assert restored.learned_events == 1800
    # the group replays from an older committed offset: applied offsets are skipped
    run(restored, range(1000, len(events)))
    assert restored.learned_events == whole.learned_events == len(events)
    assert (
        restored.learned_digest
        == whole.learned_digest
        == sum(event_hash(str(e["event_id"])) for e in events) % (1 << 64)
    )
    assert restored.policy.updates == whole.policy.updates
    for product in PRODUCT_IDS:
        assert restored.policy.models[product].weights == whole.policy.models[product].weights  # type: ignore[attr-defined]


def test_forget_drops_a_customers_pending_state() -> None:
    learner = Learner(RandomPolicy(), window_ms=10**9)
    for i, cid in enumerate(("C1", "C2", "C1")):
        record = _fb(f"e{i}", START_MS + i, cid, f"r{i}", "savings.flex", "impression")
        learner.feedback("fb", 0, i, record, lambda _c: {"k": 1.0})
    assert learner.forget("C1") == 2
    assert [p.customer_id for p in learner.pending[0].values()] == ["C2"]


def test_no_served_list_violates_eligibility_over_a_run() -> None:
    config = SimulationConfig(
        start_ms=START_MS, seed=3, customers=300, duration_ms=None, max_events=1
    )
    loop = ClosedLoop(config)
    rec = LocalRecommender(BanditPolicy(epsilon=0.2), k=5, seed=3, model_threshold=100)
    for event in loop.registrations():
        rec.apply(event.name, event.record)
    for customer in loop.visits(3000):
        for event in loop.react(customer, rec.lookup(customer.customer_id)):
            rec.apply(event.name, event.record)
    assert len(rec.audit) > 300
    for age, risk, held, consent, products in rec.audit:
        assert consent
        assert len(products) == len(set(products))
        for product in products:
            assert BY_ID[product].ineligibility(age=age, risk_profile=risk, holdings=held) is None
    assert rec.learner.metrics.clicks > 0


def test_partition_checkpoints_are_separate_and_never_go_back() -> None:
    events = _feedback_stream(600, seed=8)
    store = checkpoint.MemoryCheckpointStore()
    owner = checkpoint.PartitionCheckpoints(store, "ck", interval_seconds=0)
    zombie = checkpoint.PartitionCheckpoints(store, "ck", interval_seconds=0)
    learners = {p: Learner(BanditPolicy(epsilon=0.1), window_ms=60_000) for p in (0, 1)}
    for offset, event in enumerate(events):
        learners[offset % 2].feedback("fb", offset % 2, offset, event, lambda _c: {"k": 1.0})
    stale = checkpoint.loads(checkpoint.dumps(learners[0]))
    for p, learner in learners.items():
        assert owner.save(p, learner)
    # two partitions, two checkpoints: neither overwrote the other
    assert owner.load(0).learned_events == owner.load(1).learned_events == 300  # type: ignore[union-attr]
    assert owner.load(1).offsets == {"fb:1": 599}  # type: ignore[union-attr]
    # the new owner of partition 0 goes on learning and saves ...
    more = Learner(BanditPolicy(epsilon=0.1), window_ms=60_000)
    ahead = owner.load(0)
    assert ahead is not None
    for offset in range(600, 700, 2):
        ahead.feedback("fb", 0, offset, _fb(f"x{offset}", START_MS, "C1", "r", "fx.wallet",
                                            "impression"), lambda _c: {"k": 1.0})  # fmt: skip
    assert owner.save(0, ahead)
    # ... so a late save by the previous owner (behind it) is refused
    assert not zombie.save(0, stale)
    assert zombie.refused == 1
    assert owner.load(0).learned_events == 350  # type: ignore[union-attr]
    assert checkpoint.progress(more) == 0
    # unchanged learners are not saved again; changed ones are, on release
    assert not owner.maybe_save(0, ahead)
    saves = owner.saves
    owner.release(0, ahead)
    assert owner.saves == saves
