"""The SLA engine, pure: events -> item states; ``due(now)`` -> alerts; ``fired`` -> marks.

No Faust here: items are read from a mapping (the Faust table in the worker, a dict in tests)
and written through a ``write(partition, key, value)`` callable (the worker's writes the table
under the source partition; None deletes). The due-time index lives beside the items and is
rebuilt from them after a rebalance or a restart (:meth:`SlaEngine.rebuild`).

Exactly one alert per (item, cycle, level), in two halves:

1. the alert id is deterministic, ``uuid5(feedback_id, cycle, level)`` (:func:`alert_id`), and is
   also the alert event's ``event_id``, so any re-emission is recognisably the same alert;
2. the worker emits the alerts of a tick, **awaits the broker's acknowledgement**, and only then
   records the levels as fired in the item (:meth:`SlaEngine.fired`, a table write). A crash
   between 1 and 2 re-emits the same alert ids after recovery; a crash after 2 fires nothing
   again, because the mark is in the item's changelog.

So delivery to the alert topic is at-least-once with an idempotency key, and after dedupe by
``alert_id`` (the notifier and ClickHouse's ReplacingMergeTree on ``event_id`` do that) every
due level is seen exactly once. A level whose due time passed while the worker was down fires
at the next tick after recovery with ``late_ms = fired_at - due``. An item that arrives already
past its due times (a late submission) fires every level that is due, warning included, at the
next tick, all marked late: each level is a fact the board counts, and the notifier may fold
them. Levels never fire for a clock that a response has stopped, even if the response came in
late: nobody is to be chased for an item that was answered.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from processors.sla.index import DueIndex
from processors.sla.lifecycle import (
    Item,
    add_status,
    add_submitted,
    first_event_ms,
    new_item,
    view,
)
from processors.sla.policy import HOUR_MS, Level, SlaPolicy, level_times

SUBMITTED = "feedback_submitted"
STATUS_CHANGED = "feedback_status_changed"
_NAMESPACE = uuid.UUID("9d1c7a3e-52f4-4b8e-9a57-3c0f5e6b1d42")
_MAX_CATEGORY = 40

#: ``write(partition, key, value)``; ``value`` None deletes the key
Writer = Callable[[int, str, Item | None], None]


def alert_id(feedback_id: str, cycle: int, level: str) -> str:
    """The deterministic id of an item's alert: same item, cycle and level -> same id."""
    return str(uuid.uuid5(_NAMESPACE, f"feedback_sla/{feedback_id}/{cycle}/{level}"))


@dataclass(frozen=True, slots=True)
class PendingLevel:
    """A level of an item's running clock that has not fired yet."""

    cycle: int
    level: Level
    due_ms: int

    @property
    def mark(self) -> str:
        return f"{self.cycle}:{self.level.name}"


@dataclass(frozen=True, slots=True)
class Firing:
    """The alerts one item fires in a tick, and the marks to record once they are delivered."""

    key: str
    partition: int
    marks: tuple[str, ...]
    alerts: tuple[dict[str, Any], ...]


class SlaEngine:
    """Item states, their due-time index and the alerts they fire."""

    def __init__(
        self,
        policy: SlaPolicy,
        items: Mapping[str, Item],
        write: Writer,
        *,
        pseudonymise: Callable[[str], str],
        link_base_url: str,
        late_after_ms: int = 1000,
        retention_ms: int = 720 * HOUR_MS,
    ) -> None:
        self.policy = policy
        self.items = items
        self.write = write
        self.pseudonymise = pseudonymise
        self.link_base_url = link_base_url.rstrip("/")
        self.late_after_ms = late_after_ms
        self.retention_ms = retention_ms
        self.index = DueIndex()
        self.counts: Counter[str] = Counter()

    # -- events --------------------------------------------------------------------------------

    def apply_batch(self, events: Iterable[tuple[int, str, dict[str, Any]]]) -> int:
        """Apply ``(partition, event name, record)``; returns how many items changed.

        Each changed item is written once per batch (one changelog message).
        """
        changed: dict[str, Item] = {}
        for partition, name, record in events:
            key = record["feedback_id"]
            item = changed.get(key)
            if item is None:
                stored = self.items.get(key)
                item = (
                    new_item(partition, record["customer_id"])
                    if stored is None
                    # a copy: the stored value changes only by the write below
                    else {**stored, "ev": list(stored["ev"])}
                )
            applied = add_submitted(item, record) if name == SUBMITTED else add_status(item, record)
            if applied:
                changed[key] = item
                self.counts["applied"] += 1
            else:
                self.counts["duplicates"] += 1
        for key, item in changed.items():
            self.write(item["p"], key, item)
            self.index.schedule(item["p"], key, self.next_due(item))
        return len(changed)

    # -- erasure -------------------------------------------------------------------------------

    def erase(self, erased_at: Mapping[str, int]) -> dict[int, list[str]]:
        """Drop the items of erased customers (customer id -> erasure time, epoch ms).

        An item goes if its earliest event occurred at or before its customer's erasure (the
        block list's rule: what happened later is not covered by that request). The items are
        deleted through ``write`` and leave the index, so nothing fires for them; returns
        their keys by partition (the worker also purges them from its segment store). Scans
        every item: erasures are rare and carry no feedback id.
        """
        gone: dict[int, list[str]] = {}
        if not erased_at:
            return gone
        for key, item in list(self.items.items()):
            at = erased_at.get(item["c"])
            if at is not None and first_event_ms(item) <= at:
                gone.setdefault(item["p"], []).append(key)
        for partition, keys in gone.items():
            for key in keys:
                self.write(partition, key, None)
                self.index.schedule(partition, key, None)
            self.counts["erased_items"] += len(keys)
        return gone

    # -- clock ---------------------------------------------------------------------------------

    def pending(self, item: Item) -> list[PendingLevel]:
        """Unfired levels of the item's running clock that have a due time, earliest first."""
        sub = item["sub"]
        if sub is None:
            return []
        if item["ev"]:
            cycle = view(item).current
            if cycle is None or not cycle.running:
                return []
            index, start, pauses = cycle.index, cycle.start_ms, cycle.pauses
        else:
            index, start, pauses = 0, sub[0], []  # only submitted: skip the lifecycle walk
        policy = self.policy.for_item(sub[2], sub[3], sub[1])
        fired = item["f"]
        out = []
        for level, due in level_times(start, pauses, policy):
            if due is not None and (not fired or f"{index}:{level.name}" not in fired):
                out.append(PendingLevel(index, level, due))
        return out

    def next_due(self, item: Item) -> int:
        """When the item needs the timer next: its next level, else when it may be dropped."""
        sub = item["sub"]
        if sub is not None and not item["ev"] and not item["f"]:
            policy = self.policy.for_item(sub[2], sub[3], sub[1])
            if policy.calendar is None:  # a fresh submission: its warning, without the walk
                return int(sub[0] + policy.levels[0].offset_ms)
        levels = self.pending(item)
        return levels[0].due_ms if levels else item["t"] + self.retention_ms

    # -- timer ---------------------------------------------------------------------------------

    def due(self, now_ms: int, partitions: Iterable[int]) -> list[Firing]:
        """Alerts due at ``now_ms`` in ``partitions``; the items leave the index until
        :meth:`fired` (delivered) or :meth:`restore` (not delivered) puts them back."""
        firings: list[Firing] = []
        for partition in partitions:
            for key, _ in self.index.pop_due(partition, now_ms):
                item = self.items.get(key)
                if item is None:
                    continue
                levels = self.pending(item)
                ready = [lv for lv in levels if lv.due_ms <= now_ms]
                if ready:
                    alerts = tuple(self.alert(key, item, lv, now_ms) for lv in ready)
                    firings.append(Firing(key, partition, tuple(lv.mark for lv in ready), alerts))
                elif not levels and item["t"] + self.retention_ms <= now_ms:
                    # closed (or fully escalated) and quiet for the retention: drop it
                    self.write(partition, key, None)
                    self.counts["dropped"] += 1
                else:
                    self.index.schedule(partition, key, self.next_due(item))
        return firings

    def fired(self, firings: Iterable[Firing]) -> None:
        """Record delivered alerts in their items (call only after the broker acknowledged)."""
        for firing in firings:
            stored = self.items.get(firing.key)
            if stored is None:
                continue
            item = {**stored, "f": [*stored["f"], *firing.marks]}
            self.write(firing.partition, firing.key, item)
            self.index.schedule(firing.partition, firing.key, self.next_due(item))
            for alert in firing.alerts:
                self.counts[f"fired_{alert['level']}"] += 1
                if alert["details"]["late"] == "true":
                    self.counts["fired_late"] += 1

    def restore(self, firings: Iterable[Firing]) -> None:
        """Put items back in the index after their alerts could not be delivered."""
        for firing in firings:
            item = self.items.get(firing.key)
            if item is not None:
                self.index.schedule(firing.partition, firing.key, self.next_due(item))

    def tick(self, now_ms: int, partitions: Iterable[int]) -> list[dict[str, Any]]:
        """``due`` then ``fired`` at once (for callers whose emit is synchronous, and tests)."""
        firings = self.due(now_ms, partitions)
        self.fired(firings)
        return [alert for firing in firings for alert in firing.alerts]

    def rebuild(self, partitions: Iterable[int]) -> int:
        """Rebuild the index of ``partitions`` from the items; returns the items indexed."""
        wanted = set(partitions)
        entries: dict[int, list[tuple[str, int]]] = {p: [] for p in wanted}
        for key, item in self.items.items():
            if item is not None and item["p"] in wanted:
                entries[item["p"]].append((key, self.next_due(item)))
        for partition in self.index.partitions():
            if partition not in wanted:
                self.index.drop(partition)
        for partition, rows in entries.items():
            self.index.rebuild(partition, rows)
        return sum(len(rows) for rows in entries.values())

    # -- alerts --------------------------------------------------------------------------------

    def alert(self, key: str, item: Item, level: PendingLevel, now_ms: int) -> dict[str, Any]:
        """The ``alert`` event of ``level`` for item ``key`` fired at ``now_ms``."""
        _, channel, category, severity, _, _ = item["sub"]
        policy = self.policy.for_item(category, severity, channel)
        department = view(item).department
        ident = alert_id(key, level.cycle, level.level.name)
        late_ms = max(0, now_ms - level.due_ms)
        hours = f"{policy.response_ms / HOUR_MS:g}"
        name = level.level.name
        if name == "warning":
            what = f"{self.policy.warning_fraction:.0%} of its {hours} h response time used"
        elif name == "breach":
            what = f"no first response within {hours} h"
        else:
            what = f"still no first response, escalated to {level.level.audience}"
        category = category[:_MAX_CATEGORY]
        return {
            "event_id": ident,
            "occurred_at": level.due_ms,
            "alert_id": ident,
            "kind": "feedback_sla",
            "level": name,
            "department": department,
            "subject_id": key,
            "customer_pseudonym": self.pseudonymise(item["c"]),
            "deadline_at": level.due_ms,
            "fired_at": now_ms,
            "late_ms": late_ms,
            "summary": f"feedback {key} ({channel}, {category}, {severity}): {what}",
            "link": f"{self.link_base_url}/feedback/{key}",
            "details": {
                "cycle": str(level.cycle),
                "audience": level.level.audience,
                "late": "true" if late_ms > self.late_after_ms else "false",
                "rule": policy.rule,
                "response_hours": hours,
                "channel": channel,
                "category": category,
                "severity": severity,
            },
        }

    def stats(self) -> dict[str, Any]:
        return {
            "items": len(self.items),
            "indexed": len(self.index),
            "by_partition": {p: self.index.size(p) for p in self.index.partitions()},
            **dict(self.counts),
        }
