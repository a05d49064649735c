"""Right to erasure in the security processor: forget a customer, and keep their replays out.

An ``erasure_requested`` event (keyed by customer id, so on the partition of the customer's own
access events) is handled in two steps, because the customer is named in state of *other*
partitions too:

1. **own partition** (the request's lane): the customer's principal state (their own access
   state, keyed by their principal id) is deleted through the table, so its changelog ends with
   a tombstone; the request is then re-sent unchanged to *every* partition of the internal topic
   ``<prefix>.security.erasures`` (:data:`ERASURE_TOPIC`).
2. **every partition** (that topic's lane): the owner of partition ``q`` removes the customer
   from the entries of ``q`` that name them: staff states' bulk-access window (``bk_w``) and
   hour set (``bk_h``), and the failed-login windows (``cs``) of the network states (keyed by
   ip pseudonym / device: any partition). Entries naming them are dropped, not pseudonymised:
   a pseudonym is still personal data, and the windows are short-lived anyway. A staff
   member's current hour then counts fewer distinct customers; their baselines hold counts only.

Both steps write a marker per partition, table ``security-erased``::

    "<partition>:<pseudonym>" -> {"erased_at_ms": erasure time (event time, epoch ms),
                                  "erased_applied_ms": wall clock when it was applied}

so each worker knows every erased customer for the partitions it holds, and drops their
replayed events (``occurred_at`` at or before the erasure: :class:`cxstream.erasure.BlockList`):
a customer's own access events, staff accesses targeting them, and their re-keyed failed logins.

Nothing personal in a marker (the keyed pseudonym every erasure record uses). Bounded: one
entry (~130 bytes of JSON) per erased customer and partition, dropped ``keep_ms`` after it was
applied (:func:`keep_ms`: the input topics' retention, Kafka's own bound on what can be re-read;
with infinite retention they are kept for ever). Every step is idempotent: a replayed request
deletes and scrubs what is already gone (no writes) and leaves a marker of the same or a later
time unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cxstream.erasure import BlockList, ErasureMark
from cxstream.settings import Settings
from processors.security.state import StateStore
from streams.topics import SECURITY_ERASURES

EVENT = "erasure_requested"
#: logical name of the internal topic that carries each request to every partition
ERASURE_TOPIC = SECURITY_ERASURES
#: wall-clock period between two expiry passes over one partition's markers
EXPIRE_EVERY_MS = 600_000


def keep_ms(settings: Settings) -> int | None:
    """How long a marker is kept after it was applied (None: for ever)."""
    retention = settings.kafka.input_retention_ms
    return None if retention < 0 else retention


def marker_key(partition: int, pseudonym: str) -> str:
    return f"{partition}:{pseudonym}"


def kafka_partition(key: str, partitions: int) -> int:
    """The partition Kafka's murmur2 partitioner (ours and aiokafka's) gives a string key."""
    from aiokafka.partitioner import murmur2

    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class ErasedPrincipals:
    """The markers of the partitions this worker holds, and a :class:`BlockList` over them."""

    def __init__(self, settings: Settings, store: StateStore, *, keep_ms: int | None) -> None:
        self.settings = settings
        self.store = store
        self.keep_ms = keep_ms
        self._blocklist: BlockList | None = None
        self._next_expiry: dict[int, int] = {}
        self.dropped_events = 0
        self.expired = 0

    def blocklist(self) -> BlockList:
        """Built from the table on first use after :meth:`forget` (the table is the truth)."""
        if self._blocklist is None:
            self._blocklist = BlockList(
                self.settings,
                (
                    ErasureMark(key.split(":", 1)[1], int(value["erased_at_ms"]))
                    for key, value in list(self.store.table.items())
                    if value
                ),
            )
        return self._blocklist

    def __len__(self) -> int:
        return len(self.blocklist())

    def add(self, partition: int, mark: ErasureMark, message: Any, now_ms: int) -> bool:
        """Stage the marker of ``mark`` in ``partition``; False when one as late is there."""
        key = marker_key(partition, mark.pseudonym)
        known = self.store.get(key, partition)
        if known is not None and int(known["erased_at_ms"]) >= mark.erased_at_ms:
            return False
        value = {"erased_at_ms": mark.erased_at_ms, "erased_applied_ms": now_ms}
        self.store.stage(key, value, message, partition)
        self.blocklist().add(mark)
        return True

    def blocks(self, customer_id: str | None, occurred_at_ms: int) -> bool:
        """Whether an event naming ``customer_id`` at ``occurred_at_ms`` is covered."""
        if self.blocklist().blocks(customer_id, occurred_at_ms):
            self.dropped_events += 1
            return True
        return False

    def expire(self, partition: int, message: Any, now_ms: int) -> int:
        """Stage the removal of ``partition``'s markers applied ``keep_ms`` before now (one pass
        per :data:`EXPIRE_EVERY_MS`); ``message`` is a message of that partition."""
        if self.keep_ms is None or now_ms < self._next_expiry.get(partition, 0):
            return 0
        self._next_expiry[partition] = now_ms + EXPIRE_EVERY_MS
        prefix = f"{partition}:"
        horizon = now_ms - self.keep_ms
        old = [
            key
            for key, value in list(self.store.table.items())
            if key.startswith(prefix) and value and int(value["erased_applied_ms"]) < horizon
        ]
        for key in old:
            self.store.delete(key, message, partition)
        if old:
            self._blocklist = None
            self.expired += len(old)
        return len(old)

    def forget(self, partitions: set[int]) -> None:
        """Partitions moved: the block list is rebuilt from the table on next use."""
        self.store.forget(partitions)
        self._blocklist = None
        for partition in partitions:
            self._next_expiry.pop(partition, None)


def latest_requests(
    records: Iterable[Mapping[str, Any]], settings: Settings
) -> dict[str, ErasureMark]:
    """customer id -> mark of their latest request in ``records``."""
    latest: dict[str, ErasureMark] = {}
    for record in records:
        cid = str(record["customer_id"])
        mark = ErasureMark.from_request(record, settings)
        known = latest.get(cid)
        if known is None or mark.erased_at_ms > known.erased_at_ms:
            latest[cid] = mark
    return latest


def scrub_staff(state: dict[str, Any], customers: set[str]) -> bool:
    """Drop ``customers`` from a staff state's bulk-access window and hour set; True if changed."""
    changed = False
    window = state.get("bk_w")
    if window:
        kept = [entry for entry in window if entry[1] not in customers]
        if len(kept) != len(window):
            state["bk_w"] = kept
            changed = True
    hour = state.get("bk_h")
    if hour and any(target in customers for target in hour[1]):
        hour[1] = [target for target in hour[1] if target not in customers]
        changed = True
    return changed


def scrub_network(state: dict[str, Any], customers: set[str]) -> bool:
    """Drop ``customers``' failed logins from a network state's window; True if changed."""
    window = state.get("cs")
    if not window:
        return False
    kept = [entry for entry in window if entry[1] not in customers]
    if len(kept) == len(window):
        return False
    state["cs"] = kept
    return True


def names_any(value: Any, customers: set[str], fields: tuple[str, ...]) -> bool:
    """Cheap pre-check on a stored entry: does one of ``fields`` mention a customer?"""
    if not isinstance(value, dict):
        return False
    for name in fields:
        items = value.get(name)
        if not items:
            continue
        if name == "bk_h":
            if any(target in customers for target in items[1]):
                return True
        elif any(entry[1] in customers for entry in items):
            return True
    return False


#: ``key -> partition`` of a table key (the partition the key's source events are on)
PartitionOf = Callable[[str], int]
