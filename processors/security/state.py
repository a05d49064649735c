"""Where the detectors' state lives: Faust tables (changelogged), read and written per batch.

- principals table: ``principal_id -> state`` (rules' windows, known devices and cities,
  suppression ends, ``offset`` = the last applied offset of this principal's partition, and
  the last event ids for retry dedupe); team baselines under ``~team:<partition>:<team>``.
- networks table: ``ip:<pseudonym>`` / ``dev:<device> -> state`` for credential stuffing.
- models table: ``<partition>:<principal type> -> checkpoint`` of the anomaly model.

Every entry is written under :func:`streams.batching.acting_for` a message of the partition
its events came from, so its changelog partition is the source partition and recovery after a
rebalance moves it with the partition. A state value holds its own applied offset, so a replay
of events the state already reflects (crash before the offset commit) is recognised and skipped.
"""

from __future__ import annotations

import base64
import marshal
from collections.abc import MutableMapping
from typing import Any

from online_models.anomaly import AnomalyModel

#: event ids remembered per principal to skip client retries (same event id, new offset)
RECENT_IDS = 32


def new_state(principal_type: str) -> dict[str, Any]:
    return {"offset": -1, "type": principal_type, "ids": []}


def team_key(partition: int, team: str) -> str:
    return f"~team:{partition}:{team}"


class StateStore:
    """Copy-on-read access to a table; changed entries are written once per batch."""

    def __init__(self, table: MutableMapping[str, Any], *, faust_tables: bool = True) -> None:
        self.table = table
        self.faust_tables = faust_tables
        self._dirty: dict[str, tuple[Any, Any]] = {}

    def get(self, key: str) -> Any | None:
        staged = self._dirty.get(key)
        if staged is not None:
            return staged[0]
        stored = self.table.get(key)
        # a copy: a batch that fails half-way must not leave half-applied state in the table
        # (states are plain JSON-like values: marshal copies them ~10x faster than deepcopy)
        return None if stored is None else marshal.loads(marshal.dumps(stored))

    def stage(self, key: str, value: Any, message: Any) -> None:
        self._dirty[key] = (value, message)

    def flush(self) -> int:
        """Write the staged entries (each under a message of its partition)."""
        dirty, self._dirty = self._dirty, {}
        if not dirty:
            return 0
        if not self.faust_tables:
            for key, (value, _) in dirty.items():
                self.table[key] = value
            return len(dirty)
        from streams.batching import acting_for

        for key, (value, message) in dirty.items():
            with acting_for(message):
                self.table[key] = value
        return len(dirty)


class ModelStore:
    """Anomaly models per (partition, principal type), checkpointed with their offset."""

    def __init__(self, table: StateStore, make: Any, *, every: int) -> None:
        self.table = table
        self.make = make
        self.every = every
        self._models: dict[str, AnomalyModel] = {}
        #: learned count at the last checkpoint of each cached model
        self._saved: dict[str, int] = {}

    def model(self, partition: int, principal_type: str) -> AnomalyModel:
        key = f"{partition}:{principal_type}"
        cached = self._models.get(key)
        stored = self.table.table.get(key)
        if cached is not None and (stored is None or stored["offset"] <= cached.offset):
            return cached
        # first use here, or another worker advanced it while we did not own the partition
        if stored is not None:
            model = AnomalyModel.from_bytes(
                base64.b64decode(stored["model"]), source=f"table entry {key}"
            )
        else:
            model = self.make()
        self._models[key] = model
        self._saved[key] = model.learned
        return model

    def checkpoint(self, partition: int, principal_type: str, message: Any, force: bool) -> bool:
        """Stage a checkpoint when ``every`` events were learned since the last (or ``force``)."""
        key = f"{partition}:{principal_type}"
        model = self._models.get(key)
        if model is None or model.learned == self._saved.get(key, 0):
            return False
        if not force and model.learned - self._saved.get(key, 0) < self.every:
            return False
        value = {
            "offset": model.offset,
            "learned": model.learned,
            "model": base64.b64encode(model.to_bytes()).decode("ascii"),
        }
        self.table.stage(key, value, message)
        self._saved[key] = model.learned
        return True
