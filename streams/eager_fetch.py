"""Parse a fetch response's records when it arrives, not when the worker asks for them.

aiokafka keeps a fetched partition's records as raw (compressed) batches and parses them in
``getmany``. In Faust that call runs on the consumer thread while the worker's event loop
awaits it, so every hand-over left the worker idle while the other thread decompressed and
parsed the next ~10k records: a fifth of the wall time of ``cxstream worker -p profiles`` at
10k events/s (measured by timing ``_wait_next_records``). Parsed on arrival, the same work
runs on the consumer thread while the worker folds the previous batch, and the hand-over is a
list.

The parsed records are replayed with the offsets aiokafka's own iterator had at each record,
so positions, partial reads (``max_records``) and a corrupt batch (raised where the lazy
iterator raised it) behave as before. Memory: a partition holds at most one fetch response
(``max_partition_fetch_bytes``), now as parsed records instead of bytes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any


@functools.cache
def install_eager_fetch() -> None:
    """Make aiokafka's fetcher (every consumer of this process) parse records on arrival."""
    from aiokafka.consumer import fetcher

    fetcher.PartitionRecords = _eager_class(fetcher.PartitionRecords)


def _eager_class(lazy: Any) -> type:
    class EagerPartitionRecords(lazy):
        next_fetch_offset: int
        _records_iterator: Iterator[Any] | None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            start = self.next_fetch_offset
            records: list[Any] = []
            offsets: list[int] = []  # next_fetch_offset as each record was yielded
            error: Exception | None = None
            try:
                for record in self._records_iterator or ():
                    records.append(record)
                    offsets.append(self.next_fetch_offset)
            except Exception as exc:  # raised where the lazy iterator would have
                error = exc
            end = self.next_fetch_offset
            self.next_fetch_offset = start
            self._records_iterator = self._replay(records, offsets, end, error)

        def _replay(
            self, records: list[Any], offsets: list[int], end: int, error: Exception | None
        ) -> Iterator[Any]:
            for record, offset in zip(records, offsets, strict=True):
                self.next_fetch_offset = offset
                yield record
            self.next_fetch_offset = end
            if error is not None:
                raise error

    return EagerPartitionRecords
