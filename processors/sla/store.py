"""SLA items in memory, persisted to the Faust table as per-partition *segments*.

One changelog message per changed item was the worker's limit (Faust's table write + producer
path costs ~0.1-0.4 ms per message here, against ~10 us for the engine). So items are written
log-structured: every flush of a partition writes the items changed since the last flush as a
few table entries ``"<partition>:<seq>" -> {"i": {feedback id: item}, "d": {feedback id: seq}}``
(``seq`` grows per partition; up to ``segment_items`` items each), and an item's current value is
the one of the newest segment holding it. Recovery (:meth:`SegmentStore.recover`) reads the
table's segments of a partition in ``seq`` order, so the result is the last write, as with one
key per item. Replays and crashes between a segment write and the source offsets' commit behave
as before (the engine dedupes events by id inside the item).

Space: an entry is *live* while it is its item's newest one. A segment none of whose entries is
live is deleted (a tombstone) at once; when a partition's segments hold more than twice as many
entries as it has live ones, the oldest segments are compacted (their live entries are written
again in the current flush, then they are deleted), so the changelog stays about twice the live
data and each item is copied O(1) times on average.

Deletions (items dropped after their retention) are markers in ``"d"``: ``feedback id -> seq``
of the first marker. Older segments may still hold stale copies of a deleted item, which a
recovery must not resurrect, so a marker is kept (and copied forward by compaction) until no
segment older than that ``seq`` is left.

Erasure (:meth:`SegmentStore.purge`) cannot wait for that: the stale copies name the customer.
It rewrites every segment holding one of the erased items without it (or deletes it), so the
table, hence the changelog's latest values and any recovery, no longer hold them at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from processors.sla.lifecycle import Item

#: ``put(partition, table key, segment value | None)``; None deletes the table key
Put = Callable[[int, str, dict[str, Any] | None], None]

#: a segment is closed at this many entries or this many estimated JSON bytes, whichever first
#: (the producer's max request is 2 MiB; Kafka's default max message ~1 MiB)
SEGMENT_ITEMS = 500
SEGMENT_BYTES = 256 * 1024
#: compaction starts when a partition holds this many segments' worth more entries than twice
#: its live ones
_COMPACT_SLACK_SEGMENTS = 4


def segment_key(partition: int, seq: int) -> str:
    return f"{partition}:{seq}"


def parse_segment_key(key: str) -> tuple[int, int]:
    partition, seq = key.split(":")
    return int(partition), int(seq)


def estimated_bytes(item: Item) -> int:
    """A generous estimate of ``item``'s JSON size (exact sizes would cost a dumps per item)."""
    sub = item["sub"]
    # sub: [time, channel, category, severity, department, event id] (13 digits of time)
    text = len(item["c"]) + (13 + sum(map(len, sub[1:])) if sub else 0)
    return 96 + text + 96 * len(item["ev"]) + 20 * len(item["f"])


@dataclass(slots=True)
class _Partition:
    next_seq: int = 0
    #: seq -> [live entries, entries], oldest first (seqs only grow)
    segments: dict[int, list[int]] = field(default_factory=dict)
    #: deleted feedback id -> seq of its first marker (see the module doc)
    markers: dict[str, int] = field(default_factory=dict)
    entries: int = 0
    live: int = 0


class SegmentStore(Mapping[str, Item]):
    """Items by feedback id (a read-only mapping) with per-partition segment persistence.

    :meth:`write` changes an item at once in memory; :meth:`flush` persists every change since
    the last flush through ``put`` (call it before the source offsets may be acked, and after
    recording fired alerts).
    """

    def __init__(
        self,
        table: Mapping[str, Any],
        put: Put,
        *,
        segment_items: int = SEGMENT_ITEMS,
        segment_bytes: int = SEGMENT_BYTES,
    ) -> None:
        self.table = table
        self.put = put
        self.segment_items = segment_items
        self.segment_bytes = segment_bytes
        self._items: dict[str, Item] = {}
        #: feedback id -> (partition, seq) of its newest entry (an item or a marker)
        self._loc: dict[str, tuple[int, int]] = {}
        self._parts: dict[int, _Partition] = {}
        self._dirty: dict[int, dict[str, Item | None]] = {}
        self.segments_written = 0
        self.segments_deleted = 0
        #: segment entries removed by :meth:`purge`
        self.purged = 0

    # -- Mapping -------------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Item:
        return self._items[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._items.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    # -- writes --------------------------------------------------------------------------------

    def write(self, partition: int, key: str, value: Item | None) -> None:
        """The engine's writer: ``value`` None deletes the item."""
        if value is None:
            self._items.pop(key, None)
        else:
            self._items[key] = value
        self._dirty.setdefault(partition, {})[key] = value

    def flush(self) -> int:
        """Persist the changes since the last flush; returns the segments written."""
        written = 0
        while self._dirty:
            partition, changes = self._dirty.popitem()
            written += self._flush_partition(partition, changes)
        return written

    def _flush_partition(self, partition: int, changes: dict[str, Item | None]) -> int:
        part = self._parts.setdefault(partition, _Partition())
        entries: dict[str, Item | int] = {}
        for key, value in changes.items():
            if value is not None:
                entries[key] = value
            elif key in self._loc:
                entries[key] = part.markers.get(key, part.next_seq)
            # else: never persisted, nothing to mask
        new = sum(1 for key in entries if key not in self._loc)
        compacted = self._pick_compaction(part, len(entries), new)
        # compacted segments are deleted only after this flush's writes: they still count
        oldest = next(iter(part.segments), part.next_seq)
        for seq in compacted:
            value = self.table.get(segment_key(partition, seq)) or {}
            for key in (*value.get("i", ()), *value.get("d", ())):
                if key in entries or self._loc.get(key) != (partition, seq):
                    continue  # changed in this flush, or stale here
                item = self._items.get(key)
                if item is not None:
                    entries[key] = item
                elif part.markers[key] < oldest:
                    # no older segment is left that could resurrect it: the marker may go
                    del part.markers[key]
                    self._forget(key)
                else:
                    entries[key] = part.markers[key]
        written = 0
        for chunk in self._chunks(entries):
            self._write_segment(partition, part, chunk)
            written += 1
        for seq in compacted:
            self._delete_segment(partition, part, seq)
        # segments whose every entry was superseded by now
        for seq in [s for s, (live, _) in part.segments.items() if live == 0]:
            self._delete_segment(partition, part, seq)
        return written

    def _pick_compaction(self, part: _Partition, incoming: int, new: int) -> list[int]:
        """Oldest segments to rewrite now, so that entries stay about twice the live ones."""
        live = part.live + new
        excess = part.entries + incoming - 2 * live - _COMPACT_SLACK_SEGMENTS * self.segment_items
        picked: list[int] = []
        # bounded work per flush: copy at most twice what the flush writes anyway
        budget = 2 * max(incoming, self.segment_items)
        for seq, (seg_live, size) in part.segments.items():
            if excess <= 0 or budget <= 0:
                break
            picked.append(seq)
            excess -= size - seg_live
            budget -= seg_live
        return picked

    def _chunks(self, entries: dict[str, Item | int]) -> Iterable[dict[str, Item | int]]:
        chunk: dict[str, Item | int] = {}
        size = 0
        for key, value in entries.items():
            cost = 64 if isinstance(value, int) else estimated_bytes(value)
            if chunk and (len(chunk) >= self.segment_items or size + cost > self.segment_bytes):
                yield chunk
                chunk, size = {}, 0
            chunk[key] = value
            size += cost + len(key)
        if chunk:
            yield chunk

    def _write_segment(
        self, partition: int, part: _Partition, chunk: dict[str, Item | int]
    ) -> None:
        seq = part.next_seq
        part.next_seq += 1
        items = {k: v for k, v in chunk.items() if not isinstance(v, int)}
        markers = {k: v for k, v in chunk.items() if isinstance(v, int)}
        self.put(partition, segment_key(partition, seq), {"i": items, "d": markers})
        self.segments_written += 1
        for key, value in chunk.items():
            self._forget(key)
            self._loc[key] = (partition, seq)
            if isinstance(value, int):
                part.markers[key] = value
            else:
                part.markers.pop(key, None)
        part.segments[seq] = [len(chunk), len(chunk)]
        part.entries += len(chunk)
        part.live += len(chunk)

    def _forget(self, key: str) -> None:
        """``key``'s current entry is no longer live (superseded, or a marker let go)."""
        where = self._loc.pop(key, None)
        if where is not None:
            old = self._parts[where[0]]
            old.segments[where[1]][0] -= 1
            old.live -= 1

    def _delete_segment(self, partition: int, part: _Partition, seq: int) -> None:
        _, size = part.segments.pop(seq)
        part.entries -= size
        self.put(partition, segment_key(partition, seq), None)
        self.segments_deleted += 1

    # -- erasure -------------------------------------------------------------------------------

    def purge(self, keys_by_partition: Mapping[int, Iterable[str]]) -> int:
        """Remove items from memory *and from every segment holding a copy* (right to erasure).

        A deletion marker (:meth:`write` with None) would leave stale copies in older segments
        until compaction, and those hold the customer id: so each segment of the partition
        that holds one of ``keys`` (as an item or a marker) is written again without them, or
        deleted when nothing else is in it. Afterwards no table value names the keys, so no
        recovery can bring them back, and no marker is needed. Unflushed changes of the keys
        are dropped too. Reads every segment of the partition (erasures are rare). Returns the
        entries removed from segments.
        """
        removed = 0
        for partition, wanted in keys_by_partition.items():
            keys = set(wanted)
            if not keys:
                continue
            for key in keys:
                self._items.pop(key, None)
            dirty = self._dirty.get(partition)
            if dirty is not None:
                for key in keys:
                    dirty.pop(key, None)
                if not dirty:
                    del self._dirty[partition]
            part = self._parts.get(partition)
            if part is not None:
                removed += self._purge_segments(partition, part, keys)
        self.purged += removed
        return removed

    def _purge_segments(self, partition: int, part: _Partition, keys: set[str]) -> int:
        removed = 0
        for seq in list(part.segments):
            table_key = segment_key(partition, seq)
            value = self.table.get(table_key) or {}
            items: dict[str, Any] = value.get("i", {})
            markers: dict[str, Any] = value.get("d", {})
            hits = (keys & items.keys()) | (keys & markers.keys())
            if not hits:
                continue
            for key in hits:
                if self._loc.get(key) == (partition, seq):
                    self._forget(key)
                part.markers.pop(key, None)
            counts = part.segments[seq]
            counts[1] -= len(hits)
            part.entries -= len(hits)
            removed += len(hits)
            if counts[1] == 0:
                self._delete_segment(partition, part, seq)
                continue
            # new dicts: the table's value object must not change under Faust's feet
            self.put(
                partition,
                table_key,
                {
                    "i": {k: v for k, v in items.items() if k not in hits},
                    "d": {k: v for k, v in markers.items() if k not in hits},
                },
            )
            self.segments_written += 1
        return removed

    # -- recovery ------------------------------------------------------------------------------

    def recover(self, partitions: Iterable[int]) -> int:
        """Rebuild the items of ``partitions`` from the table (forgetting all others).

        Returns the items loaded. Unflushed changes are discarded (a rebalance: their source
        events are read again).
        """
        # everything is reloaded: the table is what the changelog holds, whoever wrote it
        self._items.clear()
        self._loc.clear()
        self._parts.clear()
        self._dirty.clear()
        keys: dict[int, list[tuple[int, str]]] = {p: [] for p in partitions}
        for key in self.table:
            partition, seq = parse_segment_key(key)
            if partition in keys:
                keys[partition].append((seq, key))
        loaded = 0
        for partition, found in keys.items():
            loaded += self._load(partition, sorted(found))
        return loaded

    def _load(self, partition: int, found: list[tuple[int, str]]) -> int:
        part = self._parts[partition] = _Partition()
        newest: dict[str, tuple[int, Item | int]] = {}
        for seq, key in found:
            value = self.table.get(key)
            if value is None:
                continue
            size = len(value["i"]) + len(value["d"])
            part.segments[seq] = [0, size]
            part.entries += size
            part.next_seq = seq + 1
            for fid, item in value["i"].items():
                newest[fid] = (seq, item)
            for fid, origin in value["d"].items():
                newest[fid] = (seq, origin)
        loaded = 0
        for fid, (seq, value) in newest.items():
            self._loc[fid] = (partition, seq)
            part.segments[seq][0] += 1
            part.live += 1
            if isinstance(value, int):
                part.markers[fid] = value
            else:
                self._items[fid] = value
                loaded += 1
        return loaded

    def stats(self) -> dict[str, Any]:
        return {
            "segments": sum(len(p.segments) for p in self._parts.values()),
            "segment_entries": sum(p.entries for p in self._parts.values()),
            "markers": sum(len(p.markers) for p in self._parts.values()),
            "segments_written": self.segments_written,
            "segments_deleted": self.segments_deleted,
            "purged_entries": self.purged,
        }
