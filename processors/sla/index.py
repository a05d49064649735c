"""Due-time index: per source partition, a heap of (due_ms, key) with lazy invalidation.

Each key has at most one *current* due time (``schedule`` replaces it); superseded heap entries
stay in the heap and are skipped when they surface, so ``schedule`` is O(log n) and popping
what is due costs O(due · log n), independent of how many items are open. The heap is rebuilt
when stale entries outnumber live ones, which bounds its size at about twice the live keys.

>>> index = DueIndex()
>>> index.schedule(0, "a", 100); index.schedule(0, "b", 50); index.schedule(0, "a", 200)
>>> index.pop_due(0, 150)
[('b', 50)]
>>> index.pop_due(0, 250), len(index)
([('a', 200)], 0)
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

#: compact a heap when it holds this many more entries than live keys (and twice as many)
_COMPACT_SLACK = 1024


class DueIndex:
    """When each key falls due next, ordered by due time per partition."""

    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[int, str]]] = {}
        self._due: dict[int, dict[str, int]] = {}

    def schedule(self, partition: int, key: str, due_ms: int | None) -> None:
        """``key`` falls due at ``due_ms`` (None: not at all); replaces its previous due time."""
        dues = self._due.setdefault(partition, {})
        if due_ms is None:
            dues.pop(key, None)
            return
        if dues.get(key) == due_ms:
            return
        dues[key] = due_ms
        heap = self._heaps.setdefault(partition, [])
        heapq.heappush(heap, (due_ms, key))
        if len(heap) > 2 * len(dues) + _COMPACT_SLACK:
            self._compact(partition)

    def pop_due(
        self, partition: int, now_ms: int, limit: int | None = None
    ) -> list[tuple[str, int]]:
        """Remove and return ``(key, due_ms)`` of keys due at ``now_ms``, earliest first."""
        heap = self._heaps.get(partition)
        if not heap:
            return []
        dues = self._due[partition]
        out: list[tuple[str, int]] = []
        while heap and heap[0][0] <= now_ms and (limit is None or len(out) < limit):
            due_ms, key = heapq.heappop(heap)
            if dues.get(key) == due_ms:  # else superseded or removed: a stale entry
                del dues[key]
                out.append((key, due_ms))
        return out

    def next_due(self, partition: int) -> int | None:
        """The earliest live due time of ``partition``."""
        heap = self._heaps.get(partition)
        dues = self._due.get(partition, {})
        while heap and dues.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def due_of(self, partition: int, key: str) -> int | None:
        return self._due.get(partition, {}).get(key)

    def drop(self, partition: int) -> None:
        """Forget a partition (revoked, or about to be rebuilt)."""
        self._heaps.pop(partition, None)
        self._due.pop(partition, None)

    def rebuild(self, partition: int, entries: Iterable[tuple[str, int]]) -> None:
        """Replace ``partition``'s index by ``(key, due_ms)`` entries in O(n)."""
        dues = dict(entries)
        self._due[partition] = dues
        heap = [(due, key) for key, due in dues.items()]
        heapq.heapify(heap)
        self._heaps[partition] = heap

    def partitions(self) -> list[int]:
        return sorted(self._due)

    def size(self, partition: int) -> int:
        return len(self._due.get(partition, {}))

    def __len__(self) -> int:
        return sum(len(d) for d in self._due.values())

    def _compact(self, partition: int) -> None:
        self.rebuild(partition, self._due[partition].items())
