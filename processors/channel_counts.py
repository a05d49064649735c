"""Per-channel (and per-action) counts of ``channel_interaction`` events.

Visible at ``GET /v1/stats/channels`` on the worker's web port.

State, in two Faust tables (changelogged, so restarts and rebalances recover it):

- ``channel_counts``: one entry per source partition, ``{"offset", "counts": {channel:
  {action: n}}, "duplicates"}``. Counts and the last counted offset are one value, written in
  one changelog message, so a replay after a crash (offsets not committed yet) is recognised by
  offset and never counted twice.
- ``channel_counts-seen``: the event ids counted within ``settings.worker.dedupe_window_seconds``
  (:class:`streams.batching.SeenEvents`, one entry per partition and batch): a second message
  with the same event id (a client retry) within the window is skipped; a replay of the *same*
  message (same partition and offset) is not mistaken for a duplicate.

Entries are per source partition because events of one channel arrive on every partition: a
worker owns only its partitions, and a key written from two partitions would overwrite itself
on recovery. The view therefore shows the partitions this worker holds (all, with one worker).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cxstream.errors import ValidationError
from streams.batching import InputEvent, SeenEvents, acting_for, group_by_partition
from streams.codec import DecodedEvent

if TYPE_CHECKING:
    import faust

    from streams.app import AppContext

log = logging.getLogger(__name__)

NAME = "channel_counts"
EVENT = "channel_interaction"


def check_interaction(event: DecodedEvent) -> None:
    """Semantic checks beyond the schema: the event must be keyable and identifiable."""
    record = event.record
    if not record.get("customer_id") and not record.get("anonymous_id"):
        raise ValidationError(
            "neither customer_id nor anonymous_id is set: the event has no partition key",
            schema=event.name,
            field="customer_id",
        )
    if not record.get("event_id"):
        raise ValidationError("event_id is empty", schema=event.name, field="event_id")


def new_state() -> dict[str, Any]:
    return {"offset": -1, "counts": {}, "duplicates": 0, "replays": 0}


def summarize(states: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The view's answer from the per-partition states."""
    by_channel: dict[str, dict[str, int]] = {}
    duplicates = replays = 0
    for state in states.values():
        duplicates += state["duplicates"]
        replays += state.get("replays", 0)
        for channel, actions in state["counts"].items():
            target = by_channel.setdefault(channel, {})
            for action, n in actions.items():
                target[action] = target.get(action, 0) + n
    channels = {c: sum(a.values()) for c, a in sorted(by_channel.items())}
    action_totals: dict[str, int] = {}
    for per_action in by_channel.values():
        for action, n in per_action.items():
            action_totals[action] = action_totals.get(action, 0) + n
    return {
        "total": sum(channels.values()),
        "channels": channels,
        "actions": dict(sorted(action_totals.items())),
        "by_channel": {c: dict(sorted(a.items())) for c, a in sorted(by_channel.items())},
        "duplicates_skipped": duplicates,
        "replays_skipped": replays,
        "partitions": sorted(states),
    }


class ChannelCounter:
    """Applies batches to the counts table, skipping replays and duplicate event ids."""

    def __init__(self, counts: Any, seen: SeenEvents) -> None:
        self.counts = counts
        self.seen = seen

    def apply(self, batch: Sequence[InputEvent]) -> None:
        for partition, items in group_by_partition(batch).items():
            self._apply_partition(partition, items)

    def _apply_partition(self, partition: int, items: list[InputEvent]) -> None:
        key = str(partition)
        stored = self.counts.get(key)
        # a copy: if the batch fails half-way, the table must not hold half-applied counts
        state = new_state() if stored is None else copy.deepcopy(stored)
        counts: dict[str, dict[str, int]] = state["counts"]
        seen = self.seen
        changed = False
        for item in items:
            if item.offset <= state["offset"]:
                # replay of a message already counted (crash before its offset was committed)
                state["replays"] = state.get("replays", 0) + 1
                changed = True
                continue
            record = item.record
            event_id = record["event_id"]
            first = seen.first_offset(partition, event_id)
            if first is not None and first != item.offset:
                state["duplicates"] += 1
            else:
                per_channel = counts.setdefault(record["channel"], {})
                per_channel[record["action"]] = per_channel.get(record["action"], 0) + 1
                if first is None:
                    seen.note(partition, event_id, item.offset)
            state["offset"] = max(state["offset"], item.offset)
            changed = True
        last = items[-1]
        seen.write(partition, last.message, last.timestamp_ms)
        if changed:
            # one changelog message holds the counts and the offset they include (atomic)
            with acting_for(last.message):
                self.counts[key] = state

    def states(self) -> dict[int, dict[str, Any]]:
        return {int(key): value for key, value in self.counts.items() if value is not None}


def register(app: faust.App, context: AppContext) -> None:
    from faust.web import Request, Response, View

    settings = context.settings
    window = settings.worker.dedupe_window_seconds
    partitions = settings.kafka.partitions
    import faust

    # JSON for table keys/values; the app default is raw bytes (for the Avro input topics)
    json_schema: faust.Schema = faust.Schema(key_serializer="json", value_serializer="json")
    counts = app.Table(
        NAME,
        partitions=partitions,
        schema=json_schema,
        help="channel_interaction counts per source partition",
    )
    seen = app.Table(
        f"{NAME}-seen",
        partitions=partitions,
        schema=json_schema,
        help="event ids applied within the dedupe window, one entry per partition and batch",
    )
    counter = ChannelCounter(counts, SeenEvents(seen, round(window * 1000)))
    context.batch_agent(EVENT, counter.apply, step=NAME, check=check_interaction)

    def stats() -> dict[str, Any]:
        return summarize(counter.states())

    context.stats[NAME] = stats

    @app.page("/v1/stats/channels")
    class ChannelStats(View):
        """Counts per channel and action of the partitions this worker holds."""

        async def get(self, request: Request) -> Response:
            return self.json({**stats(), "dead_letters": context.dead_letters.counts.snapshot()})
