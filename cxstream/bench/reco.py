"""``cxstream bench reco``: the recommender on the closed-loop simulator.

- click-through of the River bandit vs random vs popularity (and an oracle that knows the hidden
  preferences, the ceiling of this simulator), same seed, same visits, Wilson 95 % intervals;
  each policy learns online from its own feedback (``LocalRecommender``: the processor's code);
- learning rate: feedback events applied per second by the learner (join + River learn);
- top-5 lookup p99 from Redis directly (GET of the served JSON), if Redis answers.
"""

from __future__ import annotations

import json
import time
from typing import Any

from cxstream.settings import Settings
from cxstream.simulate.config import SimulationConfig
from cxstream.simulate.loop import ClosedLoop
from online_models.reco.ips import wilson_interval
from online_models.reco.local import LocalRecommender
from online_models.reco.policy import Choice, Features, Policy, make_policy

START_MS = 1_780_000_000_000


class _Oracle:
    """Knows every customer's hidden preferences (only for the ceiling)."""

    name = "oracle"

    def __init__(self, loop: ClosedLoop) -> None:
        self.updates = 0
        self.prefs = {c.customer_id: c.preferences for c in loop.customers}
        self.customer = ""

    def rank(self, x: Features, eligible: Any, k: int, rng: Any) -> list[Choice]:
        prefs = self.prefs[self.customer]
        return [
            Choice(p, prefs[p], 1.0, "oracle")
            for p in sorted(eligible, key=lambda p: -prefs[p])[:k]
        ]

    def learn(self, x: Features, product_id: str, position: int, clicked: bool) -> None:
        self.updates += 1

    def probability(self, x: Features, eligible: Any, product_id: str) -> float:
        return 0.0


def _run_policy(
    name: str, config: SimulationConfig, visits: int, shown: int, settings: Settings
) -> dict[str, Any]:
    loop = ClosedLoop(config, shown=shown)
    reco = settings.reco
    policy: Policy = (
        _Oracle(loop)
        if name == "oracle"
        else make_policy(name, epsilon=reco.epsilon, learning_rate=reco.learning_rate)
    )
    rec = LocalRecommender(
        policy,
        k=reco.k,
        seed=config.seed,
        window_ms=round(reco.attribution_window_seconds * 1000),
        feature_threshold=reco.feature_change_threshold,
        model_threshold=reco.model_change_threshold,
    )
    if isinstance(policy, _Oracle):
        serve = rec.maybe_serve

        def oracle_serve(cid: str, now: int) -> None:
            policy.customer = cid
            serve(cid, now)

        rec.maybe_serve = oracle_serve  # type: ignore[method-assign,assignment]
    for event in loop.registrations():
        rec.apply(event.name, event.record)
    impressions = clicks = 0
    feedback: list[tuple[str, dict[str, Any]]] = []
    for customer in loop.visits(visits):
        for event in loop.react(customer, rec.lookup(customer.customer_id)):
            rec.apply(event.name, event.record)
            if event.name == "recommendation_feedback":
                feedback.append((event.name, event.record))
                action = event.record["action"]
                impressions += action == "impression"
                clicks += action == "click"
    low, high = wilson_interval(clicks, impressions)
    return {
        "impressions": impressions,
        "clicks": clicks,
        "ctr": clicks / max(impressions, 1),
        "ctr_low": low,
        "ctr_high": high,
        "_feedback": feedback,
    }


def _learning_rate(settings: Settings, feedback: list[tuple[str, dict[str, Any]]]) -> float:
    from online_models.reco.learner import Learner

    reco = settings.reco
    learner = Learner(
        make_policy("river_bandit", epsilon=reco.epsilon, learning_rate=reco.learning_rate),
        window_ms=round(reco.attribution_window_seconds * 1000),
    )
    x = {"age=mid": 1.0, "risk=moderate": 1.0, "segment=mass": 1.0, "held=savings.flex": 1.0}
    started = time.perf_counter()
    for offset, (_, record) in enumerate(feedback):
        if not learner.already_applied("fb", 0, offset):
            learner.feedback("fb", 0, offset, record, lambda _c: x)
    return len(feedback) / (time.perf_counter() - started)


def _redis_lookup_p99(settings: Settings, n: int = 20_000) -> dict[str, Any]:
    import redis

    try:
        client = redis.Redis.from_url(settings.redis.url, socket_connect_timeout=2)
        client.ping()
    except redis.RedisError as exc:
        return {"lookup_error": str(exc)}
    prefix = f"{settings.kafka.topic_prefix}-bench"
    served = {
        "recommendation_id": "r",
        "items": [{"product_id": f"p{i}", "score": 0.5, "reason": "model"} for i in range(5)],
        "policy": "river_bandit",
        "model_version": "v",
        "served_at": START_MS,
    }
    keys = [f"{prefix}:reco:C{i:08d}" for i in range(1000)]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.set(key, json.dumps(served), ex=600)
    pipe.execute()
    samples = []
    for i in range(n):
        t = time.perf_counter()
        items = json.loads(client.get(keys[i % len(keys)]) or b"{}")["items"][:5]
        samples.append(time.perf_counter() - t)
        assert len(items) == 5
    client.delete(*keys)
    samples.sort()
    return {
        "lookup_top5_p50_ms": samples[n // 2] * 1000,
        "lookup_top5_p99_ms": samples[int(n * 0.99)] * 1000,
    }


def run(
    settings: Settings,
    *,
    customers: int = 2000,
    visits: int = 60_000,
    seed: int = 7,
    shown: int = 1,
) -> dict[str, Any]:
    config = SimulationConfig(
        start_ms=START_MS, seed=seed, customers=customers, duration_ms=None, max_events=1
    )
    figures: dict[str, Any] = {
        "customers": customers,
        "visits": visits,
        "seed": seed,
        "shown_per_visit": shown,
        "k": settings.reco.k,
        "epsilon": settings.reco.epsilon,
        "learning_rate": settings.reco.learning_rate,
    }
    results = {
        name: _run_policy(name, config, visits, shown, settings)
        for name in ("random", "popularity", "river_bandit", "oracle")
    }
    for name, r in results.items():
        figures[f"ctr_{name}"] = r["ctr"]
        figures[f"ctr_{name}_ci95"] = f"[{r['ctr_low']:.4f}, {r['ctr_high']:.4f}]"
        figures[f"impressions_{name}"] = r["impressions"]
    bandit = results["river_bandit"]["ctr"]
    figures["ctr_ratio_vs_random"] = bandit / max(results["random"]["ctr"], 1e-9)
    figures["ctr_ratio_vs_popularity"] = bandit / max(results["popularity"]["ctr"], 1e-9)
    figures["oracle_ratio_vs_random"] = results["oracle"]["ctr"] / max(
        results["random"]["ctr"], 1e-9
    )
    figures["learning_events_per_s"] = _learning_rate(
        settings, results["river_bandit"]["_feedback"]
    )
    figures.update(_redis_lookup_p99(settings))
    return figures
