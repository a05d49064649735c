"""Unsupervised anomaly score of access events: River HalfSpaceTrees with explanations.

One :class:`AnomalyModel` per (partition, principal type). Features must already be scaled to
[0, 1] (HalfSpaceTrees splits the unit cube; BRIEF §4). ``score_one`` never changes the model;
:meth:`AnomalyModel.observe` scores first, then learns only events after the offset the model
reflects, so a replay (offsets at or below the checkpoint's) is never learned twice.
Checkpoints are the pickled model plus that offset (:meth:`to_bytes` / :meth:`from_bytes`).

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


class AnomalyModel:
    """HalfSpaceTrees over scaled features, the offset it reflects, and feature means."""

    def __init__(
        self, *, n_trees: int = 6, height: int = 6, window_size: int = 500, seed: int = 42
    ) -> None:
        from river import anomaly

        self.model: Any = anomaly.HalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=window_size, seed=seed
        )
        #: highest source offset learned (-1: none); learning skips offsets at or below it
        self.offset = -1
        self.learned = 0
        #: running mean of every feature: the "normal" value explanations compare against
        self.means: dict[str, float] = {}

    def score(self, features: Mapping[str, float]) -> float:
        return float(self.model.score_one(dict(features)))

    def observe(self, features: Mapping[str, float], offset: int) -> float:
        """Score ``features``, then learn them unless ``offset`` is already reflected."""
        x = dict(features)
        score = float(self.model.score_one(x))
        if offset > self.offset:
            self.model.learn_one(x)
            self.offset = offset
            self.learned += 1
            n = self.learned
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
