"""Unsupervised anomaly score of access events: River HalfSpaceTrees with explanations.

One :class:`AnomalyModel` per (partition, principal type). Features must already be scaled to
[0, 1] (HalfSpaceTrees splits the unit cube; BRIEF §4). ``score_one`` never changes the model;
:meth:`AnomalyModel.observe` scores first, then learns only events after the offset the model
reflects, so a replay (offsets at or below the checkpoint's) is never learned twice.
Checkpoints are the pickled model plus that offset (:meth:`to_bytes` / :meth:`from_bytes`).

Scores are cached per feature vector: a HalfSpaceTrees score reads only the reference masses,
which change only when a window of ``window_size`` learned events closes (the cache is cleared
then), so a cached score is exactly the score River would compute. Access features are mostly
discrete (hour, flags, small counts): most events hit the cache.

>>> model = AnomalyModel(n_trees=3, height=4, window_size=20, seed=1)
>>> for offset in range(200):
...     _ = model.observe({"a": 0.1, "b": 0.2}, offset)
>>> model.observe({"a": 0.1, "b": 0.2}, 5) < model.observe({"a": 0.9, "b": 0.2}, 5)
True
>>> model.learned, model.offset
(200, 199)
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any

from cxstream.errors import ServiceError

#: pickle protocol of checkpoints (5: Python >= 3.8)
PROTOCOL = 5
#: distinct feature vectors whose scores are kept until the reference window changes
_SCORE_CACHE = 50_000


def preload() -> None:
    """Import River now (it pulls in scipy: seconds), not inside the first batch that scores."""
    import river.anomaly  # noqa: F401


class AnomalyModel:
    """HalfSpaceTrees over scaled features, the offset it reflects, and feature means."""

    def __init__(
        self,
        *,
        n_trees: int = 6,
        height: int = 6,
        window_size: int = 500,
        seed: int = 42,
        learn_every: int = 1,
    ) -> None:
        from river import anomaly

        self.model: Any = anomaly.HalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=window_size, seed=seed
        )
        #: highest source offset learned (-1: none); learning skips offsets at or below it
        self.offset = -1
        self.learned = 0
        #: learn one of every ``learn_every`` new events (scoring sees all): learning costs as
        #: much as scoring and cannot be cached; a sample describes "normal" as well
        self.learn_every = learn_every
        self.observed = 0
        #: running mean of every feature: the "normal" value explanations compare against
        self.means: dict[str, float] = {}
        #: feature vector -> score under the current reference window (not checkpointed)
        self._scores: dict[tuple[tuple[str, float], ...], float] = {}

    def score(self, features: Mapping[str, float]) -> float:
        key = tuple(features.items())
        score = self._scores.get(key)
        if score is None:
            if len(self._scores) >= _SCORE_CACHE:
                self._scores.clear()
            score = self._scores[key] = float(self.model.score_one(features))
        return score

    def observe(self, features: Mapping[str, float], offset: int) -> float:
        """Score ``features``, then learn them (one in ``learn_every``) unless ``offset`` is
        already reflected."""
        x = features
        score = self.score(x)
        if offset > self.offset:
            self.offset = offset
            self.observed += 1
            if self.observed % self.learn_every:
                return score
            self.model.learn_one(x)
            self.learned += 1
            n = self.learned
            if n % self.model.window_size == 0:
                self._scores.clear()  # a window closed: the reference masses changed
            means = self.means
            for name, value in x.items():
                mean = means.get(name, value)
                means[name] = mean + (value - mean) / min(n, 1000)
        return score

    def explain(self, features: Mapping[str, float], top: int = 3) -> list[tuple[str, float]]:
        """The features that drove the score: how much it drops when each is set to its mean.

        Costs one scoring per feature, so it runs only for events that raise a flag.
        """
        x = dict(features)
        base = self.score(x)
        drops: list[tuple[str, float]] = []
        for name, value in x.items():
            mean = self.means.get(name)
            if mean is None or mean == value:
                continue
            drop = base - self.score({**x, name: mean})
            if drop > 0:
                drops.append((name, round(drop, 3)))
        drops.sort(key=lambda item: -item[1])
        return drops[:top]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_scores"] = {}  # derived; a checkpoint holds only what was learned
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # checkpoints written before the cache and the learning sample existed
        state.setdefault("_scores", {})
        state.setdefault("learn_every", 1)
        state.setdefault("observed", state.get("learned", 0))
        self.__dict__.update(state)

    def to_bytes(self) -> bytes:
        return pickle.dumps(self, protocol=PROTOCOL)

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "checkpoint") -> AnomalyModel:
        """Restore a checkpoint (our own pickles, read from our own table or file only)."""
        try:
            model = pickle.loads(data)
        except Exception as exc:  # pickle raises many types on corrupt input
            raise ServiceError(f"anomaly model {source}: cannot restore: {exc}") from exc
        if not isinstance(model, cls):
            raise ServiceError(f"anomaly model {source}: holds {type(model).__name__}")
        return model
