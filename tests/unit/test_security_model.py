"""The anomaly model: restored checkpoints score the same; checkpointed offsets are not relearned;
scores rank outliers above the normal and name the features that drove them."""

from __future__ import annotations

import random

import pytest

from cxstream.errors import ServiceError
from cxstream.settings import SecuritySettings, Settings
from online_models.anomaly import AnomalyModel
from processors.security.testing import MemoryPipeline
from tests.unit.test_security_rules import T0, access


def normal(rng: random.Random) -> dict[str, float]:
    return {"a": rng.uniform(0.1, 0.3), "b": rng.uniform(0.4, 0.6), "c": 0.0}


def test_restored_model_scores_the_same_and_skips_learned_offsets() -> None:
    rng = random.Random(5)
    model = AnomalyModel(n_trees=4, height=5, window_size=50, seed=3)
    for offset in range(400):
        model.observe(normal(rng), offset)
    restored = AnomalyModel.from_bytes(model.to_bytes())
    probes = [normal(rng) for _ in range(20)] + [{"a": 0.9, "b": 0.05, "c": 1.0}]
    assert [restored.score(x) for x in probes] == [model.score(x) for x in probes]
    assert (restored.offset, restored.learned) == (399, 400)
    # a replay of offsets the checkpoint reflects scores but does not learn
    before = restored.to_bytes()
    for offset in range(350, 400):
        restored.observe(normal(rng), offset)
    assert restored.learned == 400
    assert restored.to_bytes() == before
    restored.observe(normal(rng), 400)
    assert restored.learned == 401


def test_outlier_scores_higher_and_is_explained_by_its_odd_feature() -> None:
    rng = random.Random(1)
    model = AnomalyModel(n_trees=4, height=5, window_size=100, seed=1)
    for offset in range(1000):
        model.observe(normal(rng), offset)
    typical = sum(model.score(normal(rng)) for _ in range(50)) / 50
    outlier = {"a": 0.2, "b": 0.5, "c": 1.0}
    assert model.score(outlier) > typical + 0.2
    assert model.explain(outlier)[0][0] == "c"


def test_corrupt_checkpoint_is_a_clear_error() -> None:
    with pytest.raises(ServiceError, match="cannot restore"):
        AnomalyModel.from_bytes(b"not a pickle", source="table entry 0:customer")


def test_engine_restart_restores_the_checkpoint_and_does_not_relearn_a_replay() -> None:
    config = SecuritySettings(anomaly_checkpoint_every=1, anomaly_warmup=0, anomaly_learn_every=2)
    pipe = MemoryPipeline(Settings(security=config), partitions=1)
    records = [
        access(f"C{i % 7}", "login_success", T0 + i * 60_000, device_id=f"d{i % 7}")
        for i in range(300)
    ]
    events = pipe.events(records)
    pipe.run(events[:200])
    stored = pipe.tables["models"]["0:customer"]
    # every event scored, one in two learned
    assert (stored["offset"], stored["observed"], stored["learned"]) == (199, 200, 100)
    # restart: a new engine restores the checkpoint; the replayed half is neither re-applied
    # nor learned again, the new half is learned once
    pipe.engine = pipe.new_engine(pipe.settings)
    pipe.run(events[100:])
    model = pipe.engine.model_store.model(0, "customer")
    assert (model.offset, model.observed, model.learned) == (299, 300, 150)
    assert pipe.engine.stats.replays_skipped == 100


def test_cached_scores_equal_rivers_own_across_window_changes() -> None:
    # discrete features repeat, so most scores come from the cache; each must be what River
    # computes for the model as it is at that moment (the cache is dropped when a window closes)
    rng = random.Random(7)
    model = AnomalyModel(n_trees=3, height=4, window_size=40, seed=2)
    hits = 0
    for offset in range(500):
        x = {"a": rng.choice((0.0, 0.25, 0.5)), "b": rng.choice((0.1, 0.9)), "c": 0.0}
        hits += tuple(x.items()) in model._scores
        cached = model.observe(x, offset)
        assert cached == model.model.score_one(x) or model.learned % 40 == 0
        assert model.score(x) == model.model.score_one(x)
    assert hits > 400  # the case the cache is for: 6 distinct vectors


def test_learning_a_sample_scores_every_event_and_replays_the_same_choices() -> None:
    rng = random.Random(3)
    xs = [normal(rng) for _ in range(300)]
    model = AnomalyModel(n_trees=3, height=4, window_size=20, seed=1, learn_every=3)
    for offset, x in enumerate(xs[:150]):
        model.observe(x, offset)
    assert (model.observed, model.learned) == (150, 50)
    restored = AnomalyModel.from_bytes(model.to_bytes())
    for offset, x in enumerate(xs):  # replays 0..149 (not observed again), then new events
        model.observe(x, offset)
        restored.observe(x, offset)
    assert (restored.observed, restored.learned) == (300, 100)
    assert restored.to_bytes() == model.to_bytes()
