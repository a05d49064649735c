"""Checkpoints: one :class:`~online_models.reco.learner.Learner` per source partition (River
models, pending impressions, the offsets it reflects, counters) pickled as one value.

Why per partition: the input topics are co-partitioned by customer, so partition ``p`` of every
input topic is owned by exactly one worker of the group at a time; a learner of partition ``p``
learns only feedback of partition ``p`` and its checkpoint is written only by that owner. Adding
or removing a worker moves whole learners with their partitions (saved on revocation, loaded on
assignment), so two workers never overwrite each other's model and a moved partition resumes
warm. One value per partition means one atomic write: a restored learner's models always match
its offsets, so the processor skips exactly the feedback already inside the models.

Saves are fenced by *progress* (events applied, from the offsets): a store refuses a checkpoint
that is behind the one it holds, so a late save by a worker that already lost the partition (a
zombie after a session timeout) cannot roll a partition's model back.
"""

from __future__ import annotations

import pickle
import time
from typing import Any, Protocol

from cxstream.errors import CxStreamError
from online_models.reco.learner import Learner

_MAGIC = b"cxreco1:"

# KEYS[1] = checkpoint hash, ARGV = (progress, blob); refuses to go back in progress
_SAVE_IF_NOT_BEHIND = """
local stored = tonumber(redis.call('HGET', KEYS[1], 'progress') or '-1')
if tonumber(ARGV[1]) < stored then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[1], 'blob', ARGV[2])
return 1
"""


class CheckpointStore(Protocol):
    def load(self, key: str) -> bytes | None: ...

    def save(self, key: str, progress: int, blob: bytes) -> bool:
        """Store ``blob`` unless the stored checkpoint has more progress; True when stored."""
        ...


class CheckpointError(CxStreamError):
    """A stored checkpoint cannot be read back."""


class RedisCheckpointStore:
    """Checkpoints as Redis hashes ``{progress, blob}``, saved by a fencing Lua script."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._save = client.register_script(_SAVE_IF_NOT_BEHIND)

    def load(self, key: str) -> bytes | None:
        blob: bytes | None = self.client.hget(key, "blob")
        return blob

    def save(self, key: str, progress: int, blob: bytes) -> bool:
        return bool(self._save(keys=[key], args=[progress, blob]))


class MemoryCheckpointStore:
    """The same semantics in a dict (unit tests, the in-process recommender)."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[int, bytes]] = {}

    def load(self, key: str) -> bytes | None:
        entry = self.values.get(key)
        return None if entry is None else entry[1]

    def save(self, key: str, progress: int, blob: bytes) -> bool:
        entry = self.values.get(key)
        if entry is not None and progress < entry[0]:
            return False
        self.values[key] = (progress, blob)
        return True


def progress(learner: Learner) -> int:
    """Events applied by ``learner`` (offsets are per topic-partition and only grow)."""
    return sum(offset + 1 for offset in learner.offsets.values())


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


class PartitionCheckpoints:
    """Saves the learner of each source partition under ``<key_prefix>:<partition>``, at most
    every ``interval_seconds`` per partition and only when it applied something new."""

    def __init__(self, store: CheckpointStore, key_prefix: str, interval_seconds: float) -> None:
        self.store = store
        self.key_prefix = key_prefix
        self.interval = interval_seconds
        self._saved: dict[int, tuple[float, int]] = {}  # partition -> (monotonic, progress)
        self.saves = 0
        self.refused = 0
        self.last_bytes = 0

    def key(self, partition: int) -> str:
        return f"{self.key_prefix}:{partition}"

    def load(self, partition: int) -> Learner | None:
        blob = self.store.load(self.key(partition))
        if blob is None:
            self._saved[partition] = (time.monotonic(), 0)
            return None
        try:
            learner = loads(blob)
        except CheckpointError as exc:
            raise CheckpointError(f"{exc} (key {self.key(partition)})") from exc
        self._saved[partition] = (time.monotonic(), progress(learner))
        return learner

    def save(self, partition: int, learner: Learner) -> bool:
        blob = dumps(learner)
        done = progress(learner)
        stored = self.store.save(self.key(partition), done, blob)
        self._saved[partition] = (time.monotonic(), done)
        if stored:
            self.saves += 1
            self.last_bytes = len(blob)
        else:
            self.refused += 1
        return stored

    def due(self, partition: int, learner: Learner) -> bool:
        """Whether :meth:`maybe_save` would save now."""
        saved_at, saved_progress = self._saved.get(partition, (0.0, -1))
        if time.monotonic() - saved_at < self.interval:
            return False
        return progress(learner) != saved_progress

    def maybe_save(self, partition: int, learner: Learner) -> bool:
        if not self.due(partition, learner):
            return False
        return self.save(partition, learner)

    def release(self, partition: int, learner: Learner) -> None:
        """The partition goes to another worker: save what changed, forget the timer."""
        if progress(learner) != self._saved.get(partition, (0.0, -1))[1]:
            self.save(partition, learner)
        self._saved.pop(partition, None)
