"""Right to erasure in the recommender's learner: after ``forget`` a checkpoint names the customer
nowhere (and may be saved at once, even with no new offsets), and skipped replays count as
applied without being learned."""

from __future__ import annotations

from online_models.reco import checkpoint
from online_models.reco.learner import Learner
from online_models.reco.policy import BanditPolicy
from tests.unit.test_reco_core import START_MS, _fb

ERASED = "C0000042"
KEPT = "C0000077"
TOPIC = "cx.recommendation_feedback"


def learner_with_both() -> Learner:
    learner = Learner(BanditPolicy(epsilon=0.1), window_ms=10**9)
    for offset in range(40):
        cid = ERASED if offset % 2 else KEPT
        t = START_MS + offset * 1000
        learner.metrics.active(t, cid)
        learner.metrics.served(t, cid, ["savings.flex"])
        action = "click" if offset % 5 == 4 else "impression"
        record = _fb(f"e{offset}", t, cid, f"r{offset // 2}", "savings.flex", action)
        learner.feedback(TOPIC, 0, offset, record, lambda _c: {"age=mid": 1.0})
    return learner


def test_a_checkpoint_after_forget_names_the_customer_nowhere() -> None:
    learner = learner_with_both()
    store = checkpoint.MemoryCheckpointStore()
    saver = checkpoint.PartitionCheckpoints(store, "ck", interval_seconds=0)
    assert saver.save(0, learner)
    assert ERASED.encode() in store.values["ck:0"][1]
    assert learner.forget(ERASED) > 0
    # nothing moved the offsets: the periodic save sees no progress and would keep the old one
    assert not saver.maybe_save(0, learner)
    assert ERASED.encode() in store.values["ck:0"][1]
    # the forced save (what the processor does after an erasure) is accepted and clean
    assert saver.save(0, learner)
    blob = store.values["ck:0"][1]
    assert ERASED.encode() not in blob
    assert KEPT.encode() in blob
    restored = saver.load(0)
    assert restored is not None
    assert all(p.customer_id == KEPT for p in restored.pending[0].values())
    assert all(ERASED not in w.active | w.served for w in restored.metrics.windows.values())


def test_skipped_events_count_as_applied_but_are_not_learned() -> None:
    learner = learner_with_both()
    before = (learner.learned_events, learner.learned_digest, learner.policy.updates)
    progress = checkpoint.progress(learner)
    learner.skip(TOPIC, 0, 40)
    assert learner.already_applied(TOPIC, 0, 40)
    assert checkpoint.progress(learner) == progress + 1
    assert (learner.learned_events, learner.learned_digest, learner.policy.updates) == before
    # an old offset skipped again never moves the offsets back
    learner.skip(TOPIC, 0, 3)
    assert learner.applied_offset(TOPIC, 0) == 40
