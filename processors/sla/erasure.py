"""Erased customers in the SLA engine: a marker per customer keeps their replays out.

The erasure of the items themselves is :meth:`.engine.SlaEngine.erase` (memory, due index) plus
:meth:`.store.SegmentStore.purge` (every persisted copy). This module remembers *who* was
erased and when, so that a replay of their old feedback events (``occurred_at`` at or before
the erasure time, :class:`cxstream.erasure.BlockList`'s rule) does not create the items again
and fire alerts naming them.

Markers live in the Faust table ``sla-erased`` (written under the erasure request's partition,
which is the partition of the customer's feedback: all topics are keyed by customer id)::

    "<partition>:<pseudonym>" -> {"erased_at_ms": erasure time (event time, epoch ms),
                                  "erased_applied_ms": wall clock when this worker applied it}

Nothing personal: the pseudonym is the keyed HMAC every erasure record uses. A replayed request
with the same (or an older) erasure time writes nothing.

Bounded: one entry (~130 bytes of JSON) per erased customer, dropped ``keep_ms`` after it was
applied (wall clock): the longer of the input topics' retention (``kafka.input_retention_ms``,
Kafka's own bound on what a consumer can re-read) and ``sla.closed_retention_hours`` (how long
the engine keeps any item). With infinite topic retention (-1) markers are kept for ever. After
expiry, a re-*published* old event could create an item again; its alerts still cannot reach
ClickHouse, because the sink's block list (the erasure ledger, never expired) drops alert rows
whose ``customer_pseudonym`` and event time fall before the erasure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cxstream.erasure import BlockList, ErasureMark
from cxstream.settings import Settings
from processors.sla.policy import HOUR_MS

#: ``put(partition, table key, value | None)``; None deletes the key
MarkerPut = Callable[[int, str, dict[str, Any] | None], None]


def marker_key(partition: int, pseudonym: str) -> str:
    return f"{partition}:{pseudonym}"


def keep_ms(settings: Settings) -> int | None:
    """How long a marker is kept after it was applied (None: for ever)."""
    retention = settings.kafka.input_retention_ms
    if retention < 0:
        return None
    return max(retention, round(settings.sla.closed_retention_hours * HOUR_MS))


@dataclass(frozen=True, slots=True)
class Marker:
    partition: int
    mark: ErasureMark
    applied_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"erased_at_ms": self.mark.erased_at_ms, "erased_applied_ms": self.applied_ms}


class ErasedCustomers:
    """The markers of this worker's partitions and a :class:`BlockList` over them."""

    def __init__(self, settings: Settings, put: MarkerPut, *, keep_ms: int | None) -> None:
        self.settings = settings
        self.put = put
        self.keep_ms = keep_ms
        self._markers: dict[str, Marker] = {}  # pseudonym -> marker
        self._blocklist = BlockList(settings)
        self.dropped_events = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._markers)

    def add(self, partition: int, customer_id: str, erased_at_ms: int, now_ms: int) -> bool:
        """Mark ``customer_id`` erased at ``erased_at_ms``; True when the marker changed."""
        mark = ErasureMark.from_request(
            {"customer_id": customer_id, "occurred_at": erased_at_ms, "event_id": ""},
            self.settings,
        )
        if not self._blocklist.add(mark):
            return False  # a replayed (or older) request: nothing to write
        marker = Marker(partition, mark, now_ms)
        self._markers[mark.pseudonym] = marker
        self.put(partition, marker_key(partition, mark.pseudonym), marker.to_json())
        return True

    def blocks(self, customer_id: str, occurred_at_ms: int) -> bool:
        """Whether an event of ``customer_id`` at ``occurred_at_ms`` is covered by an erasure."""
        if self._blocklist.blocks(customer_id, occurred_at_ms):
            self.dropped_events += 1
            return True
        return False

    def erased_at(self, customer_id: str) -> int | None:
        mark = self._blocklist.mark_of(customer_id)
        return None if mark is None else mark.erased_at_ms

    def recover(self, entries: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
        """Rebuild from the table's ``(key, value)`` entries (after a rebalance or restart)."""
        self._markers.clear()
        for key, value in entries:
            if value is None:
                continue
            partition, pseudonym = key.split(":", 1)
            mark = ErasureMark(pseudonym, int(value["erased_at_ms"]))
            self._markers[pseudonym] = Marker(int(partition), mark, int(value["erased_applied_ms"]))
        self._blocklist = BlockList(self.settings, (m.mark for m in self._markers.values()))
        return len(self._markers)

    def expire(self, now_ms: int, partitions: Iterable[int]) -> int:
        """Drop the markers of ``partitions`` (owned ones) applied ``keep_ms`` before now."""
        if self.keep_ms is None or not self._markers:
            return 0
        owned = set(partitions)
        horizon = now_ms - self.keep_ms
        old = [
            (pseudonym, m)
            for pseudonym, m in self._markers.items()
            if m.partition in owned and m.applied_ms < horizon
        ]
        for pseudonym, marker in old:
            del self._markers[pseudonym]
            self.put(marker.partition, marker_key(marker.partition, pseudonym), None)
        if old:
            self._blocklist = BlockList(self.settings, (m.mark for m in self._markers.values()))
            self.expired += len(old)
        return len(old)

    def stats(self) -> dict[str, Any]:
        return {
            "erased_customers": len(self._markers),
            "erased_events_dropped": self.dropped_events,
            "erased_markers_expired": self.expired,
        }
