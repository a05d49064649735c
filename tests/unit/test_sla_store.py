"""SegmentStore: items persisted as per-partition segments; recovery gives the last writes."""

from __future__ import annotations

import json
import random
from typing import Any

from processors.sla.lifecycle import Item, new_item
from processors.sla.store import SegmentStore, parse_segment_key


class Table(dict[str, Any]):
    """The Faust table stand-in: a dict, and the changelog as the list of writes in order."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[int, str, Any]] = []

    def put(self, partition: int, key: str, value: dict[str, Any] | None) -> None:
        assert parse_segment_key(key)[0] == partition
        # what the changelog carries is serialized: later changes to objects must not leak in
        value = None if value is None else json.loads(json.dumps(value))
        self.log.append((partition, key, value))
        if value is None:
            self.pop(key, None)
        else:
            self[key] = value


def replayed(table: Table, upto: int | None = None) -> Table:
    """A fresh table from the first ``upto`` changelog messages (a crash after them)."""
    fresh = Table()
    for _, key, value in table.log[:upto]:
        if value is None:
            fresh.pop(key, None)
        else:
            fresh[key] = value
    return fresh


def item(partition: int, n: int) -> Item:
    value = new_item(partition, f"C{n}")
    value["t"] = n
    return value


def test_recovery_holds_the_last_write_of_every_item() -> None:
    table = Table()
    store = SegmentStore(table, table.put, segment_items=3)
    for n in range(10):
        store.write(n % 2, f"fb-{n}", item(n % 2, n))
    store.flush()
    store.write(0, "fb-0", item(0, 100))
    store.write(1, "fb-1", None)
    store.flush()
    recovered = SegmentStore(replayed(table), table.put, segment_items=3)
    assert recovered.recover([0, 1]) == 9
    assert dict(recovered) == dict(store)
    assert recovered["fb-0"]["t"] == 100
    assert "fb-1" not in recovered
    # chunks of at most 3 items: 10 items in two partitions -> 2 + 2 segments, then 1 + 1
    assert len({key for _, key, v in table.log if v is not None}) == 6


def test_recover_only_loads_the_partitions_asked_for() -> None:
    table = Table()
    store = SegmentStore(table, table.put)
    for n in range(6):
        store.write(n % 3, f"fb-{n}", item(n % 3, n))
    store.flush()
    store.recover([2])
    assert sorted(store) == ["fb-2", "fb-5"]


def test_one_segment_per_partition_and_flush_for_a_batch_of_items() -> None:
    table = Table()
    store = SegmentStore(table, table.put)
    for n in range(400):
        store.write(n % 4, f"fb-{n}", item(n % 4, n))
    assert store.flush() == 4
    assert len(table.log) == 4


def test_superseded_segments_are_deleted_and_entries_stay_bounded() -> None:
    table = Table()
    store = SegmentStore(table, table.put, segment_items=50)
    rng = random.Random(3)
    for round_ in range(300):
        for _ in range(40):
            n = rng.randrange(500)
            store.write(0, f"fb-{n}", item(0, round_ * 1000 + n))
        store.flush()
    entries = sum(len(v["i"]) + len(v["d"]) for v in table.values())
    assert entries == store.stats()["segment_entries"]
    assert entries <= 2 * len(store) + 4 * 50 + 40
    recovered = SegmentStore(replayed(table), table.put)
    recovered.recover([0])
    assert dict(recovered) == dict(store)


def test_deleted_items_are_not_resurrected_by_older_segments_and_markers_expire() -> None:
    table = Table()
    store = SegmentStore(table, table.put, segment_items=10)
    # fb-x's old copy sits in a segment with long-lived items
    store.write(0, "fb-x", item(0, 1))
    for n in range(9):
        store.write(0, f"keep-{n}", item(0, n))
    store.flush()
    store.write(0, "fb-x", None)
    store.flush()
    assert any("fb-x" in v["d"] for v in table.values())
    recovered = SegmentStore(replayed(table), table.put, segment_items=10)
    recovered.recover([0])
    assert "fb-x" not in recovered
    assert len(recovered) == 9
    # churn: compaction rewrites the old segments; the marker goes once none older is left
    rng = random.Random(5)
    for n in range(500):
        for _ in range(10):
            store.write(0, f"churn-{rng.randrange(100)}", item(0, n))
        store.flush()
    assert not any("fb-x" in v["i"] for v in table.values())
    assert store.stats()["markers"] == 0
    recovered = SegmentStore(replayed(table), table.put)
    recovered.recover([0])
    assert dict(recovered) == dict(store)
    assert "fb-x" not in recovered


def test_a_crash_after_any_changelog_message_recovers_a_flushed_state() -> None:
    """Every prefix of the changelog recovers to the state after some whole flush, or to a
    state every item of which is its value after the flush that was cut (never older)."""
    table = Table()
    store = SegmentStore(table, table.put, segment_items=4)
    rng = random.Random(11)
    states: list[tuple[int, dict[str, Item]]] = []
    for round_ in range(120):
        for _ in range(rng.randrange(1, 9)):
            n = rng.randrange(40)
            if rng.random() < 0.2:
                store.write(0, f"fb-{n}", None)
            else:
                store.write(0, f"fb-{n}", item(0, round_ * 100 + n))
        store.flush()
        states.append((len(table.log), json.loads(json.dumps(dict(store)))))
    previous: dict[str, Item] = {}
    start = 0
    for end, state in states:
        for cut in range(start + 1, end + 1):
            recovered = SegmentStore(replayed(table, cut), table.put)
            recovered.recover([0])
            got = dict(recovered)
            for key in set(got) | set(state) | set(previous):
                # each item is either as before this flush or as after it
                assert got.get(key) in (previous.get(key), state.get(key)), (cut, key)
        assert dict(recovered) == state
        previous, start = state, end


def test_segments_stay_under_their_byte_limit() -> None:
    table = Table()
    store = SegmentStore(table, table.put, segment_bytes=4096)
    rng = random.Random(2)
    for n in range(300):
        value = item(0, n)
        value["sub"] = [n, "app", "x" * rng.randrange(40), "medium", "customer_service", "e" * 36]
        value["ev"] = [[n, "acknowledged", None, "e" * 36] for _ in range(rng.randrange(5))]
        value["f"] = ["0:warning"] * rng.randrange(3)
        store.write(0, f"fb-{n}", value)
    assert store.flush() > 1
    assert max(len(json.dumps(v)) for v in table.values()) <= 4096
