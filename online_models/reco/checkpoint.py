"""Checkpoints: the whole :class:`~online_models.reco.learner.Learner` (River models, pending
impressions, the offsets it reflects, counters) pickled as one value.

One value means one atomic write: a restored learner's models always match its offsets, so the
processor skips exactly the feedback already inside the models. The store is anything with
``get(key) -> bytes | None`` and ``set(key, bytes)`` (a Redis client in the processor, a dict
wrapper in tests).
"""

from __future__ import annotations

import pickle
import time
from typing import Protocol

from cxstream.errors import CxStreamError
from online_models.reco.learner import Learner

_MAGIC = b"cxreco1:"


class CheckpointStore(Protocol):
    def get(self, name: str) -> bytes | None: ...

    def set(self, name: str, value: bytes) -> object: ...


class CheckpointError(CxStreamError):
    """A stored checkpoint cannot be read back."""


def dumps(learner: Learner) -> bytes:
    return _MAGIC + pickle.dumps(learner, protocol=pickle.HIGHEST_PROTOCOL)


def loads(blob: bytes) -> Learner:
    if not blob.startswith(_MAGIC):
        raise CheckpointError(f"recommender checkpoint: unknown format (starts {blob[:8]!r})")
    try:
        learner = pickle.loads(blob[len(_MAGIC) :])
    except Exception as exc:
        raise CheckpointError(f"recommender checkpoint: cannot unpickle ({exc})") from exc
    if not isinstance(learner, Learner):
        raise CheckpointError(f"recommender checkpoint holds a {type(learner).__name__}")
    return learner


class Checkpointer:
    """Saves a learner to ``store`` under ``key`` at most every ``interval_seconds``."""

    def __init__(self, store: CheckpointStore, key: str, interval_seconds: float) -> None:
        self.store = store
        self.key = key
        self.interval = interval_seconds
        self.saved_at = time.monotonic()
        self.saves = 0
        self.last_bytes = 0

    def load(self) -> Learner | None:
        blob = self.store.get(self.key)
        return None if blob is None else loads(blob)

    def save(self, learner: Learner) -> None:
        blob = dumps(learner)
        self.store.set(self.key, blob)
        self.saved_at = time.monotonic()
        self.saves += 1
        self.last_bytes = len(blob)

    def maybe_save(self, learner: Learner) -> bool:
        if time.monotonic() - self.saved_at < self.interval:
            return False
        self.save(learner)
        return True
