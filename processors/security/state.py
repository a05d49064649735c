"""Where the detectors' state lives: Faust tables (changelogged), read and written per batch.

- principals table: ``principal_id -> state`` (rules' windows, known devices and cities,
  suppression ends, ``offset`` = the last applied offset of this principal's partition, and
  fingerprints of the last event ids for retry dedupe, :func:`id_fingerprint`); team baselines
  under ``~team:<partition>:<team>``.
- networks table: ``ip:<pseudonym>`` / ``dev:<device> -> state`` for credential stuffing.
- models table: ``<partition>:<principal type> -> checkpoint`` of the anomaly model.
- erased table: ``<partition>:<pseudonym> -> erasure marker`` (:mod:`processors.security.erasure`).

Every entry is written under :func:`streams.batching.acting_for` a message of the partition
its events came from, so its changelog partition is the source partition and recovery after a
rebalance moves it with the partition. A state value holds its own applied offset, so a replay
of events the state already reflects (crash before the offset commit) is recognised and skipped.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import marshal
from collections.abc import MutableMapping
from typing import Any

from online_models.anomaly import AnomalyModel

#: event ids remembered per principal to skip client retries (same event id, new offset)
RECENT_IDS = 32


def id_fingerprint(event_id: str) -> str:
    """64-bit digest of an event id (not keyed: ids are not PII), 11 characters (a UUID takes 36).

    The retry list is most of a state's JSON (written on every change), so it holds these; a
    false match needs a 64-bit collision among 32 ids (~2e-18 per event).

    >>> id_fingerprint("6f1d8d2c-4f3e-5a7b-9c1d-2e3f4a5b6c7d")
    'ynIqNmOJqY8'
    """
    digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
    return base64.b64encode(digest, altchars=b"-_")[:11].decode("ascii")


def new_state(principal_type: str) -> dict[str, Any]:
    return {"offset": -1, "type": principal_type, "ids": []}


def team_key(partition: int, team: str) -> str:
    return f"~team:{partition}:{team}"


class StateStore:
    """Decoded table entries kept in memory between batches; changed ones written once per batch.

    The table is the durable copy: an entry is read from it (and copied, so the table's own
    object is never changed in place) the first time its key is used, then lives here, is
    changed in place by the rules and is written back once per batch when it was staged.
    Entries of a partition are dropped when the partition is revoked (:meth:`forget`: another
    worker may advance them meanwhile), all touched entries when a batch fails half-way
    (:meth:`abort`), and the oldest clean ones above ``max_entries`` (re-read when used again).
    :meth:`delete` stages a removal: :meth:`flush` deletes the key from the table (a tombstone
    on its changelog), and until then :meth:`get` answers None for it.
    """

    def __init__(
        self,
        table: MutableMapping[str, Any],
        *,
        faust_tables: bool = True,
        max_entries: int = 500_000,
    ) -> None:
        self.table = table
        self.faust_tables = faust_tables
        self.max_entries = max_entries
        #: key -> (partition, live value)
        self._cache: dict[str, tuple[int, Any]] = {}
        self._dirty: dict[str, Any] = {}
        self._touched: set[str] = set()
        #: staged removals (a subset of ``_dirty``)
        self._deleted: set[str] = set()
        self.loads = 0
        self.writes = 0

    def get(self, key: str, partition: int) -> Any | None:
        cached = self._cache.get(key)
        if cached is not None:
            self._touched.add(key)
            return cached[1]
        if key in self._deleted:
            return None
        stored = self.table.get(key)
        if stored is None:
            return None
        self.loads += 1
        # states are plain JSON-like values: marshal copies them ~10x faster than deepcopy
        value = marshal.loads(marshal.dumps(stored))
        self._cache[key] = (partition, value)
        self._touched.add(key)
        return value

    def stage(self, key: str, value: Any, message: Any, partition: int) -> None:
        """Mark ``value`` (new, or the live object :meth:`get` returned) as changed."""
        self._cache[key] = (partition, value)
        self._touched.add(key)
        self._dirty[key] = message
        self._deleted.discard(key)

    def delete(self, key: str, message: Any, partition: int) -> None:
        """Stage the removal of ``key`` (written under ``message``, a message of ``partition``)."""
        self._cache.pop(key, None)
        self._touched.add(key)
        self._dirty[key] = message
        self._deleted.add(key)

    def flush(self) -> int:
        """Write the staged entries (each under a message of its partition)."""
        dirty, self._dirty = self._dirty, {}
        deleted, self._deleted = self._deleted, set()
        self._touched.clear()
        cache = self._cache
        table = self.table
        if dirty:
            if not self.faust_tables:
                # plain dicts keep the object: store a copy, as a changelog would
                for key in dirty:
                    if key in deleted:
                        table.pop(key, None)
                    else:
                        table[key] = marshal.loads(marshal.dumps(cache[key][1]))
            else:
                from streams.batching import acting_for

                for key, message in dirty.items():
                    with acting_for(message):
                        if key not in deleted:
                            table[key] = cache[key][1]
                        elif key in table:
                            # Faust sends the tombstone, then drops the key from its store
                            del table[key]
            self.writes += len(dirty)
        if len(cache) > self.max_entries:
            for key in list(itertools.islice(cache, len(cache) - self.max_entries * 9 // 10)):
                del cache[key]
        return len(dirty)

    def abort(self) -> None:
        """A batch failed: drop what it touched (the table still holds the last written)."""
        for key in self._touched:
            self._cache.pop(key, None)
        self._touched.clear()
        self._dirty.clear()
        self._deleted.clear()

    def forget(self, partitions: set[int]) -> None:
        """Drop the cached entries of ``partitions`` (revoked: the table is read again)."""
        if not partitions:
            return
        for key in [k for k, (p, _) in self._cache.items() if p in partitions]:
            del self._cache[key]


class ModelStore:
    """Anomaly models per (partition, principal type), checkpointed with their offset.

    A model is restored from its checkpoint (or made new) on first use after the partition was
    assigned, then lives here until the partition is revoked (:meth:`forget`).
    """

    def __init__(self, table: StateStore, make: Any, *, every: int) -> None:
        self.table = table
        self.make = make
        self.every = every
        self._models: dict[tuple[int, str], AnomalyModel] = {}
        #: learned count at the last checkpoint of each cached model
        self._saved: dict[tuple[int, str], int] = {}

    def model(self, partition: int, principal_type: str) -> AnomalyModel:
        cached = self._models.get((partition, principal_type))
        if cached is not None:
            return cached
        key = f"{partition}:{principal_type}"
        stored = self.table.table.get(key)
        if stored is not None:
            model = AnomalyModel.from_bytes(
                base64.b64decode(stored["model"]), source=f"table entry {key}"
            )
        else:
            model = self.make()
        self._models[partition, principal_type] = model
        self._saved[partition, principal_type] = model.learned
        return model

    def checkpoint(self, partition: int, principal_type: str, message: Any, force: bool) -> bool:
        """Stage a checkpoint when ``every`` events were learned since the last (or ``force``)."""
        slot = (partition, principal_type)
        model = self._models.get(slot)
        saved = self._saved.get(slot, 0)
        if model is None or model.learned == saved:
            return False
        if not force and model.learned - saved < self.every:
            return False
        value = {
            "offset": model.offset,
            "observed": model.observed,
            "learned": model.learned,
            "model": base64.b64encode(model.to_bytes()).decode("ascii"),
        }
        self.table.stage(f"{partition}:{principal_type}", value, message, partition)
        self._saved[slot] = model.learned
        return True

    def forget(self, partitions: set[int]) -> None:
        """Drop the models of ``partitions`` (revoked: their next owner continues them)."""
        for slot in [slot for slot in self._models if slot[0] in partitions]:
            del self._models[slot]
            self._saved.pop(slot, None)
