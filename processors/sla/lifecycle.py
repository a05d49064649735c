"""A feedback item's lifecycle and SLA clock, derived from its events (pure).

An item's state is a small JSON value (a Faust table value; short keys keep 1M items small)::

    {"p": source partition, "c": customer id (the topics' key, in clear there already),
     "sub": [occurred_at, channel, category, severity, department, event_id] | None,
     "ev": [[occurred_at, status, department | None, event_id], ...],
     "f": ["<cycle>:<level>", ...],     # levels whose alert was delivered
     "t": latest event time}

The clock is recomputed from the events, sorted by event time, every time one is added: the
submission and its status changes come on two topics and may arrive in any order (late
submissions, replays), and the result must not depend on that order. Applying an event whose
id the item already holds changes nothing (replays, producer retries).

Statuses (``feedback_status_changed.status``) and what they do to the clock of the current
*cycle* (cycle 0 starts at submission, each reopen starts a new one with a full budget):

- ``acknowledged``: nothing (a receipt is not a response); ends a pause.
- ``assigned``: the item moves to ``department`` (alerts go there from now on); ends a pause.
- ``awaiting_customer``: pauses a running clock (the schema has no "customer replied": the next
  status change other than ``awaiting_customer`` ends the pause).
- ``responded``: the first response stops the clock.
- ``resolved``: stops a clock still running (resolving without a response counts as answered).
- ``reopened``: after a stop, starts a new cycle at the reopen time; ignored while running.

Status changes that happened (event time) before the submission are taken as at the submission.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from processors.sla.policy import Pause

STATUSES = (
    "acknowledged",
    "responded",
    "awaiting_customer",
    "resolved",
    "reopened",
    "assigned",
)
_STOPS = frozenset({"responded", "resolved"})

Item = dict[str, Any]


@dataclass(slots=True)
class Cycle:
    """One run of the response clock: from submission or a reopen to the first response."""

    index: int
    start_ms: int
    pauses: list[Pause] = field(default_factory=list)
    stopped_at: int | None = None

    @property
    def running(self) -> bool:
        return self.stopped_at is None

    @property
    def paused(self) -> bool:
        return bool(self.pauses) and self.pauses[-1][1] is None


@dataclass(slots=True)
class ItemView:
    """What the events of an item say now."""

    status: str
    department: str
    cycles: list[Cycle]

    @property
    def current(self) -> Cycle | None:
        return self.cycles[-1] if self.cycles else None


def new_item(partition: int, customer_id: str) -> Item:
    return {"p": partition, "c": customer_id, "sub": None, "ev": [], "f": [], "t": 0}


def event_ids(item: Item) -> set[str]:
    ids = {entry[3] for entry in item["ev"]}
    if item["sub"] is not None:
        ids.add(item["sub"][5])
    return ids


def first_event_ms(item: Item) -> int:
    """Event time of the item's earliest event (submission or status change)."""
    times = [entry[0] for entry in item["ev"]]
    if item["sub"] is not None:
        times.append(item["sub"][0])
    return min(times, default=item["t"])


def add_submitted(item: Item, record: dict[str, Any]) -> bool:
    """Record the submission; False if it was there already (a replay or a re-send)."""
    if item["sub"] is not None:
        # one submission per feedback id: a second one (other event id) does not restart it
        return False
    item["sub"] = [
        record["occurred_at"],
        record["channel"],
        record["category"],
        record.get("severity") or "medium",
        record.get("department") or "customer_service",
        record["event_id"],
    ]
    item["t"] = max(item["t"], record["occurred_at"])
    return True


def add_status(item: Item, record: dict[str, Any]) -> bool:
    """Record a status change; False if the item holds its event id already."""
    event_id = record["event_id"]
    if any(entry[3] == event_id for entry in item["ev"]):
        return False
    item["ev"].append([record["occurred_at"], record["status"], record.get("department"), event_id])
    item["t"] = max(item["t"], record["occurred_at"])
    return True


def view(item: Item) -> ItemView:
    """The lifecycle state and clock cycles of ``item`` (see the module doc for the rules)."""
    sub = item["sub"]
    if sub is None:
        # status changes without their submission (yet): no clock
        return ItemView("unsubmitted", "customer_service", [])
    submitted_at, department = sub[0], sub[4]
    cycles = [Cycle(0, submitted_at)]
    status = "submitted"
    for at, new_status, new_department, _ in sorted(item["ev"], key=_order):
        at = max(at, submitted_at)
        cycle = cycles[-1]
        if new_status == "assigned" and new_department:
            department = new_department
        if cycle.running:
            if cycle.paused and new_status != "awaiting_customer":
                start, _ = cycle.pauses[-1]
                cycle.pauses[-1] = (start, at)
            if new_status in _STOPS:
                cycle.stopped_at = at
            elif new_status == "awaiting_customer" and not cycle.paused:
                cycle.pauses.append((at, None))
        elif new_status == "reopened":
            cycles.append(Cycle(cycle.index + 1, at))
        status = new_status
    return ItemView(status, department, cycles)


def _order(entry: list[Any]) -> tuple[int, str]:
    # event time, then event id: the same order whatever order the events arrived in
    return entry[0], entry[3]


def is_open(item: Item) -> bool:
    """True while the item's current clock runs (or is paused)."""
    current = view(item).current
    return current is not None and current.running
