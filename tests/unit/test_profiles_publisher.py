"""Waiting publications: coalescing across batches, pending blocks, settling, recovery.

The table is a dict with the one hook :class:`Publications` uses (``on_recover``); writes go
through :func:`streams.batching.acting_for` exactly as in the worker.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from processors.profiles.publisher import Publications


class Table(dict[Any, Any]):
    def on_recover(self, callback: Any) -> None:
        self.recover = callback


def _message(partition: int) -> Any:
    return SimpleNamespace(topic="t.channel_interaction", partition=partition, value=b"")


def _publications(interval_ms: int = 100) -> tuple[Publications, Table]:
    table = Table()
    return Publications(table, interval_ms, "t.channel_interaction"), table


def test_changes_coalesce_per_customer_with_the_first_base_and_all_attributes() -> None:
    pubs, table = _publications()
    a, b = {"v": 3}, {"v": 4}
    pubs.add(0, _message(0), "tx:0:10", {"C1": (a, frozenset({"transactions"}))}, {"C1": 2})
    pubs.add(0, _message(0), "ci:0:20", {"C1": (b, frozenset({"channels"}))}, {"C1": 3})
    pubs.add(1, _message(1), "ci:1:5", {"C2": ({"v": 1}, None)}, {"C2": 0})
    assert table == {"tx:0:10": ["C1"], "ci:0:20": ["C1"], "ci:1:5": ["C2"]}
    pending, blocks = pubs.take()
    # newest state, attributes of both batches, base of the first one
    assert pending["C1"] == (0, b, frozenset({"transactions", "channels"}), 2)
    assert pending["C2"] == (1, {"v": 1}, None, 0)
    assert blocks == {0: ["tx:0:10", "ci:0:20"], 1: ["ci:1:5"]}
    assert pubs.take() == ({}, {})


def test_a_full_publication_stays_full() -> None:
    pubs, _ = _publications()
    pubs.add(0, _message(0), "rp:0:1", {"C1": ({"v": 3}, None)}, {"C1": 3})
    pubs.add(0, _message(0), "ci:0:2", {"C1": ({"v": 4}, frozenset({"channels"}))}, {"C1": 3})
    assert pubs.take()[0]["C1"][2] is None


def test_blocks_go_only_once_their_snapshots_are_acknowledged() -> None:
    pubs, table = _publications()
    pubs.add(2, _message(2), "tx:2:7", {"C1": ({"v": 1}, None)}, {})
    _, blocks = pubs.take()
    acknowledged = False
    pubs.published(blocks, lambda: acknowledged)
    pubs.settle()
    assert "tx:2:7" in table
    acknowledged = True
    pubs.settle()
    assert "tx:2:7" not in table
    assert not pubs.in_flight


def test_a_failed_snapshot_send_raises_and_keeps_the_block() -> None:
    pubs, table = _publications()
    pubs.add(0, _message(0), "tx:0:1", {"C1": ({"v": 1}, None)}, {})
    _, blocks = pubs.take()

    def failed() -> bool:
        raise RuntimeError("3 profile_snapshot events were not delivered")

    pubs.published(blocks, failed)
    with pytest.raises(RuntimeError, match="not delivered"):
        pubs.settle()
    assert "tx:0:1" in table


async def test_recovery_republishes_everyone_of_the_remaining_blocks_in_full() -> None:
    pubs, table = _publications()
    table["tx:1:40"] = ["C1", "C2"]
    table["ci:3:9"] = ["C3"]
    await table.recover()
    pending, blocks = pubs.take()
    assert pending == {
        "C1": (1, None, None, 0),
        "C2": (1, None, None, 0),
        "C3": (3, None, None, 0),
    }
    assert blocks == {1: ["tx:1:40"], 3: ["ci:3:9"]}


def test_revoked_partitions_are_left_to_their_new_owner() -> None:
    pubs, _ = _publications()
    pubs.add(0, _message(0), "tx:0:1", {"C1": ({"v": 1}, None)}, {})
    pubs.add(1, _message(1), "tx:1:1", {"C2": ({"v": 1}, None)}, {})
    pubs.revoked({1})
    pending, blocks = pubs.take()
    assert set(pending) == {"C1"}
    assert blocks == {0: ["tx:0:1"]}


def test_due_after_the_interval() -> None:
    pubs, _ = _publications(interval_ms=1)
    assert not pubs.due()
    pubs.add(0, _message(0), "tx:0:1", {"C1": ({"v": 1}, None)}, {})
    assert pubs.since is not None
    pubs.since -= 1.0  # as if the change had waited a second
    assert pubs.due()
    pubs.take()
    assert not pubs.due()


async def test_recovery_skips_blocks_of_partitions_owned_elsewhere() -> None:
    table = Table()
    pubs = Publications(table, 100, "t.channel_interaction", owned=lambda: {1})
    table["tx:1:40"] = ["C1"]
    table["tx:2:40"] = ["C2"]  # written here before partition 2 moved to another worker
    await table.recover()
    pending, blocks = pubs.take()
    assert set(pending) == {"C1"}
    assert blocks == {1: ["tx:1:40"]}
