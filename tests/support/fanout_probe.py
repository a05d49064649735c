"""A probe processor for the lane fan-out test: two handlers on one topic, each emitting.

For every ``channel_interaction`` event, handler ``a`` emits an ``alert`` of level ``info`` and
handler ``b`` (whose check rejects ``action == "search"``) one of level ``warning``, both
keyed by the input's key, so the test can check that each handler saw what it should and that
emitted events land on the partition of their input (same partitioner on both clients).
"""

from __future__ import annotations

from typing import Any

from cxstream.errors import ValidationError
from streams.batching import InputEvent
from streams.codec import DecodedEvent

EVENT = "channel_interaction"


def reject_searches(event: DecodedEvent) -> None:
    if event.record["action"] == "search":
        raise ValidationError("probe b takes no searches", schema=event.name, field="action")


def _alert(item: InputEvent, level: str) -> dict[str, Any]:
    key = (item.key or b"").decode()
    return {
        "event_id": f"{item.record['event_id']}-{level}",
        "occurred_at": item.record["occurred_at"],
        "alert_id": f"{item.record['event_id']}-{level}",
        "kind": "pipeline",
        "level": level,
        "department": "it",
        "subject_id": key,
        "customer_pseudonym": None,
        "deadline_at": None,
        "fired_at": item.record["occurred_at"],
        "late_ms": 0,
        "summary": f"probe {level}",
        "link": None,
        "details": {"partition": str(item.partition), "offset": str(item.offset)},
    }


def register(app: Any, context: Any) -> None:
    async def handler_a(batch: list[InputEvent]) -> None:
        await context.delivered([await context.emit("alert", _alert(i, "info")) for i in batch])

    async def handler_b(batch: list[InputEvent]) -> None:
        for item in batch:
            await context.emit("alert", _alert(item, "warning"))

    context.batch_agent(EVENT, handler_a, step="probe-a")
    context.batch_agent(EVENT, handler_b, step="probe-b", check=reject_searches)
