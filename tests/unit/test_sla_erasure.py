"""Right to erasure in the SLA engine: the customer's items leave memory, the due index and every
persisted segment (so no recovery brings them back), nothing fires for them afterwards, and
markers (pseudonym + erasure time, bounded) keep their replayed events out."""

from __future__ import annotations

import json
import random

from cxstream.erasure import customer_pseudonym
from cxstream.settings import KafkaSettings, Settings, SlaSettings
from processors.sla.erasure import ErasedCustomers, keep_ms, marker_key
from processors.sla.lifecycle import Item, new_item
from processors.sla.policy import HOUR_MS
from processors.sla.store import SegmentStore
from tests.unit.test_sla_engine import BREACH, ESC2, T0, WARN, Harness
from tests.unit.test_sla_store import Table, replayed

ERASED = "C0000042"
KEPT = "C0000077"
DAY_MS = 24 * HOUR_MS


def item_of(customer: str, partition: int, n: int) -> Item:
    value = new_item(partition, customer)
    value["t"] = n
    return value


def consistent(store: SegmentStore, table: Table) -> None:
    """The store's bookkeeping agrees with what the table holds."""
    entries = sum(len(v["i"]) + len(v["d"]) for v in table.values())
    assert entries == store.stats()["segment_entries"]
    assert store.stats()["segments"] == len(table)


def test_purge_removes_every_copy_so_recovery_cannot_resurrect() -> None:
    table = Table()
    store = SegmentStore(table, table.put, segment_items=4)
    rng = random.Random(7)
    # many flushes: the erased customer's items have stale copies in older segments
    for round_ in range(30):
        for _ in range(5):
            n = rng.randrange(12)
            customer = ERASED if n % 3 == 0 else KEPT
            store.write(0, f"fb-{n}", item_of(customer, 0, round_ * 100 + n))
        store.flush()
    store.write(0, "fb-0", None)  # one of theirs deleted earlier: a marker plus stale copies
    store.flush()
    theirs = [f"fb-{n}" for n in range(12) if n % 3 == 0]
    assert any(ERASED in json.dumps(v) for v in table.values())
    kept = {k: v for k, v in store.items() if v["c"] == KEPT}

    assert store.purge({0: theirs}) > 0
    assert not any(ERASED in json.dumps(v) for v in table.values())
    assert not any(key in json.dumps(v) for v in table.values() for key in theirs)
    assert dict(store) == kept
    consistent(store, table)
    # the changelog's latest values (what a recovering worker reads) hold none of them
    recovered = SegmentStore(replayed(table), table.put)
    assert recovered.recover([0]) == len(kept)
    assert dict(recovered) == kept
    assert recovered.stats()["markers"] == 0
    # the store goes on working: more writes and compactions stay consistent
    for round_ in range(200):
        store.write(0, f"fb-{rng.randrange(1, 12, 3)}", item_of(KEPT, 0, 10_000 + round_))
        store.flush()
    consistent(store, table)
    recovered = SegmentStore(replayed(table), table.put)
    recovered.recover([0])
    assert dict(recovered) == dict(store)
    assert not any(ERASED in json.dumps(v) for v in table.values())


def test_purge_drops_unflushed_changes_and_leaves_other_partitions_alone() -> None:
    table = Table()
    store = SegmentStore(table, table.put)
    store.write(0, "fb-a", item_of(ERASED, 0, 1))
    store.write(1, "fb-b", item_of(KEPT, 1, 2))
    store.flush()
    store.write(0, "fb-a", item_of(ERASED, 0, 3))  # not flushed yet
    store.write(0, "fb-c", item_of(ERASED, 0, 4))  # never flushed
    store.purge({0: ["fb-a", "fb-c"]})
    writes = len(table.log)
    assert store.flush() == 0
    assert len(table.log) == writes
    assert list(store) == ["fb-b"]
    assert list(table) == ["1:0"]  # partition 0's only segment held nothing else: deleted
    consistent(store, table)


def test_erase_drops_items_and_nothing_fires_for_them() -> None:
    h = Harness()
    h.submit("fb-1", at=T0)
    h.submit("fb-2", at=T0, customer_id=KEPT)
    assert {s for s, _, _ in h.tick(WARN + 1)} == {"fb-1", "fb-2"}
    gone = h.engine.erase({ERASED: T0 + HOUR_MS})
    assert gone == {3: ["fb-1"]}
    assert "fb-1" not in h.items
    assert h.engine.index.due_of(3, "fb-1") is None
    fired = h.levels_until(ESC2 + DAY_MS, step_ms=HOUR_MS)
    assert [level for level, _ in fired] == ["breach", "escalation_1", "escalation_2"]
    assert h.engine.stats()["erased_items"] == 1


def test_erase_keeps_items_that_began_after_the_erasure() -> None:
    h = Harness()
    h.submit("fb-old", at=T0)
    h.submit("fb-new", at=T0 + 2 * HOUR_MS)
    assert h.engine.erase({ERASED: T0 + HOUR_MS}) == {3: ["fb-old"]}
    assert list(h.items) == ["fb-new"]
    assert h.engine.erase({}) == {}


def test_markers_block_replays_hold_no_id_and_replayed_requests_write_nothing() -> None:
    settings = Settings()
    writes: list[tuple[int, str, dict[str, int] | None]] = []
    erased = ErasedCustomers(settings, lambda p, k, v: writes.append((p, k, v)), keep_ms=None)
    assert erased.add(2, ERASED, BREACH, now_ms=5)
    pseudonym = customer_pseudonym(ERASED, settings)
    assert writes == [
        (2, marker_key(2, pseudonym), {"erased_at_ms": BREACH, "erased_applied_ms": 5})
    ]
    assert ERASED not in repr(writes)
    # the same request again, or an older one: nothing changes, nothing is written
    assert not erased.add(2, ERASED, BREACH, now_ms=9)
    assert not erased.add(2, ERASED, T0, now_ms=9)
    assert len(writes) == 1
    assert erased.blocks(ERASED, BREACH)
    assert erased.blocks(ERASED, T0)
    assert not erased.blocks(ERASED, BREACH + 1)  # later events are not covered
    assert not erased.blocks(KEPT, T0)
    assert erased.stats()["erased_events_dropped"] == 2
    # a later erasure of the same customer moves the time forward
    assert erased.add(2, ERASED, ESC2, now_ms=10)
    assert erased.blocks(ERASED, BREACH + 1)


def test_markers_recover_from_the_table_and_expire_after_their_bound() -> None:
    settings = Settings()
    table: dict[str, dict[str, int]] = {}

    def put(partition: int, key: str, value: dict[str, int] | None) -> None:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value

    erased = ErasedCustomers(settings, put, keep_ms=DAY_MS)
    erased.add(0, ERASED, T0, now_ms=1_000)
    erased.add(1, KEPT, T0, now_ms=1_000 + DAY_MS)
    fresh = ErasedCustomers(settings, put, keep_ms=DAY_MS)
    assert fresh.recover(table.items()) == 2
    assert fresh.blocks(ERASED, T0)
    assert fresh.blocks(KEPT, T0)
    # only owned partitions' markers expire, once applied longer ago than the bound
    assert fresh.expire(1_000 + DAY_MS + 1, partitions=[1]) == 0
    assert fresh.expire(1_000 + DAY_MS + 1, partitions=[0, 1]) == 1
    assert not fresh.blocks(ERASED, T0)
    assert fresh.blocks(KEPT, T0)
    assert list(table) == [marker_key(1, customer_pseudonym(KEPT, settings))]


def test_marker_bound_follows_topic_retention_and_item_retention() -> None:
    week = 7 * DAY_MS
    assert keep_ms(Settings(kafka=KafkaSettings(input_retention_ms=week))) == 720 * HOUR_MS
    long = Settings(
        kafka=KafkaSettings(input_retention_ms=90 * DAY_MS),
        sla=SlaSettings(closed_retention_hours=24),
    )
    assert keep_ms(long) == 90 * DAY_MS
    assert keep_ms(Settings(kafka=KafkaSettings(input_retention_ms=-1))) is None
