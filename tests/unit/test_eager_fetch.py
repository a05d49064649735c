"""Records parsed on arrival replay exactly what aiokafka's lazy iterator yields."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from aiokafka.consumer import fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition

from streams.eager_fetch import _eager_class

TP = TopicPartition("cx.channel_interaction", 3)


def _batch(base_offset: int, count: int) -> bytes:
    builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 20)
    for i in range(count):
        builder.append(i, 1_780_000_000_000 + i, b"C%d" % i, b"value-%d" % i, [])
    buffer = builder.build()
    buffer[0:8] = struct.pack(">q", base_offset)  # not covered by the batch's CRC
    return bytes(buffer)


def _records(cls: type, data: bytes, fetch_offset: int, check_crcs: bool = True) -> Any:
    return cls(TP, MemoryRecords(data), [], fetch_offset, None, None, check_crcs, 0)


def _walk(records: Any) -> tuple[list[tuple[int, bytes, int]], int, BaseException | None]:
    """(offset, value, next_fetch_offset after it) per record, the final offset, the error."""
    seen = []
    try:
        for record in records:
            seen.append((record.offset, record.value, records.next_fetch_offset))
    except CorruptRecordException as exc:
        return seen, records.next_fetch_offset, exc
    return seen, records.next_fetch_offset, None


@pytest.mark.parametrize("fetch_offset", [100, 103, 109, 110])
def test_records_and_positions_match_the_lazy_iterator(fetch_offset: int) -> None:
    data = _batch(100, 10) + _batch(110, 6)  # a fetch offset inside a batch skips its head
    eager = _eager_class(fetcher.PartitionRecords)
    lazy_walk = _walk(_records(fetcher.PartitionRecords, data, fetch_offset))
    eager_records = _records(eager, data, fetch_offset)
    assert eager_records.next_fetch_offset == fetch_offset  # nothing consumed yet
    assert _walk(eager_records) == lazy_walk
    assert lazy_walk[0][0][0] == fetch_offset
    assert lazy_walk[1] == 116


def test_a_partial_read_leaves_the_position_after_the_last_record_taken() -> None:
    data = _batch(200, 8)
    eager = _records(_eager_class(fetcher.PartitionRecords), data, 200)
    lazy = _records(fetcher.PartitionRecords, data, 200)
    for _ in range(3):
        next(eager), next(lazy)
        assert eager.next_fetch_offset == lazy.next_fetch_offset
    assert eager.next_fetch_offset == 203


def test_a_corrupt_batch_raises_after_the_records_before_it() -> None:
    bad = bytearray(_batch(310, 4))
    bad[-1] ^= 0xFF  # last byte of the last record: the CRC no longer matches
    data = _batch(300, 10) + bytes(bad)
    eager_walk = _walk(_records(_eager_class(fetcher.PartitionRecords), data, 300))
    lazy_walk = _walk(_records(fetcher.PartitionRecords, data, 300))
    assert [r[0] for r in eager_walk[0]] == list(range(300, 310))
    assert isinstance(eager_walk[2], CorruptRecordException)
    assert (eager_walk[0], eager_walk[1]) == (lazy_walk[0], lazy_walk[1])
    assert type(eager_walk[2]) is type(lazy_walk[2])
