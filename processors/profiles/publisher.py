"""Which customers still have to be published, coalesced across batches, and kept durable.

Publishing a profile (Redis hash + ``profile_snapshot``) costs far more than folding an event,
so changed customers are not published per batch but collected here and published together
every ``settings.profiles.publish_interval_ms``: a customer changed by several batches within
an interval is published once, with its newest state.

Deferring publication must not lose one when the worker crashes. The offsets of a batch may be
committed (Faust flushes its producer, then commits, on its own timer) while its customers are
still waiting here, so memory alone is not enough. Each batch therefore also writes one
**pending block** to the ``profiles-pending`` table (``"<topic code>:<partition>:<first
offset>" -> [customer ids]``) under :func:`streams.batching.acting_for` its last message: the
block goes to the changelog with the batch's state writes, so it is durable before the batch's
offsets can be. A block is deleted only after the publications it lists were handed to Redis
and their snapshots were acknowledged by the broker. After a restart or a rebalance the table
holds the blocks of the owned partitions whose publications may not have happened; every
customer they name is published again, in full, from the table (the truth). So:

- offsets committed => the batch's block was durable => either its customers were published
  (snapshots acknowledged) or the block is still there and they are published on recovery;
- offsets not committed => the batch is replayed; the engine reports its customers as replayed
  and they are published again.

Re-publishing is harmless: snapshots have a stable id per customer and version, Redis writes
carry the version and never overwrite a newer one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from processors.profiles.fold import Profile
from streams.batching import acting_for

#: customer id -> (partition, state or None = read from the table, attributes or None = all,
#: base version: the version before the first change still waiting)
Pending = dict[str, tuple[int, Profile | None, frozenset[str] | None, int]]


@dataclass(frozen=True, slots=True)
class PartitionMessage:
    """Stands for a source message of ``partition`` when a block is deleted outside a batch.

    Faust tables read only the topic (co-partitioning check) and the partition of the current
    event's message to route a changelog write.
    """

    topic: str
    partition: int
    value: bytes = b""
    key: bytes | None = None


@dataclass
class Flight:
    """Blocks whose publications were made; deleted once their snapshots are acknowledged."""

    blocks: dict[int, list[str]]
    #: True once every snapshot of the publication was acknowledged (raises if one failed)
    sent: Callable[[], bool]


class Publications:
    """Changed customers waiting to be published, and their pending blocks (module doc)."""

    def __init__(
        self,
        table: Any,
        interval_ms: int,
        topic: str,
        owned: Callable[[], set[int]] | None = None,
    ) -> None:
        self.table = table
        #: partitions this worker owns now (None: all the table holds)
        self.owned = owned
        self.interval = interval_ms / 1000
        #: any source topic of the table's partitions (see :class:`PartitionMessage`)
        self.topic = topic
        self.pending: Pending = {}
        #: partition -> pending block keys covering :attr:`pending`
        self.blocks: dict[int, list[str]] = {}
        self.in_flight: list[Flight] = []
        #: monotonic time of the oldest waiting change (None: nothing waits)
        self.since: float | None = None
        #: one publication at a time: Redis writes and erasures must not overtake each other
        self.lock = asyncio.Lock()
        table.on_recover(self.recover)

    def add(
        self,
        partition: int,
        message: Any,
        block: str,
        changes: dict[str, tuple[Profile, frozenset[str] | None]],
        bases: dict[str, int],
    ) -> None:
        """Remember ``changes`` (customer id -> (newest state, attributes it may have changed
        or None for all)) of a batch of ``partition``; ``bases``: versions before the batch."""
        if not changes:
            return
        with acting_for(message):
            self.table[block] = list(changes)
        self.blocks.setdefault(partition, []).append(block)
        pending = self.pending
        for cid, (state, names) in changes.items():
            old = pending.get(cid)
            if old is None:
                pending[cid] = (partition, state, names, bases.get(cid, 0))
            else:
                old_names = old[2]
                merged = None if old_names is None or names is None else old_names | names
                pending[cid] = (partition, state, merged, old[3])
        if self.since is None:
            self.since = time.monotonic()

    def discard(self, customer_ids: Iterable[str]) -> None:
        """Forget waiting publications of ``customer_ids`` (erased: nothing to publish)."""
        for cid in customer_ids:
            self.pending.pop(cid, None)

    def due(self) -> bool:
        return self.since is not None and time.monotonic() - self.since >= self.interval

    def take(self) -> tuple[Pending, dict[int, list[str]]]:
        """What waits now (cleared here); later batches collect into fresh containers."""
        pending, blocks = self.pending, self.blocks
        self.pending, self.blocks, self.since = {}, {}, None
        return pending, blocks

    def published(self, blocks: dict[int, list[str]], sent: Callable[[], bool]) -> None:
        """The publications of ``blocks`` were made; ``sent()`` tells when their snapshots
        were acknowledged (and raises if one failed)."""
        if blocks:
            self.in_flight.append(Flight(blocks, sent))

    def settle(self) -> None:
        """Delete blocks whose snapshots were all acknowledged; raise a failed send's error."""
        still: list[Flight] = []
        for flight in self.in_flight:
            if not flight.sent():
                still.append(flight)
                continue
            for partition, keys in flight.blocks.items():
                with acting_for(PartitionMessage(self.topic, partition)):
                    for key in keys:
                        if key in self.table:
                            del self.table[key]
        self.in_flight = still

    def revoked(self, partitions: set[int]) -> None:
        """Partitions moved away: their publications and blocks are the new owner's now."""
        self.pending = {c: p for c, p in self.pending.items() if p[0] not in partitions}
        self.blocks = {p: keys for p, keys in self.blocks.items() if p not in partitions}
        for flight in self.in_flight:
            flight.blocks = {p: k for p, k in flight.blocks.items() if p not in partitions}
        if not self.pending:
            self.since = None

    async def recover(self) -> None:
        """After recovery: publish, in full, every customer of the blocks the table holds."""
        kept: dict[int, list[str]] = {}
        pending = self.pending
        # the memory store keeps keys written here after their partition moved away
        owned = None if self.owned is None else self.owned()
        for key, customer_ids in list(self.table.items()):
            partition = int(str(key).split(":")[1])
            if owned is not None and partition not in owned:
                continue
            kept.setdefault(partition, []).append(str(key))
            for cid in customer_ids:
                pending[cid] = (partition, None, None, 0)
        # blocks of partitions no longer owned left the table with them: forget those
        self.blocks = kept
        self.since = time.monotonic() if self.pending else None
