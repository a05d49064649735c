"""Faust glue of live profiles: tables, batch lanes, the Redis mirror, snapshots, web view.

State (changelog-backed Faust tables in ``settings.worker.store``; keys and values are bytes,
values JSON, so the memory store holds each profile as its compact serialized form):

- ``profiles``: customer id -> profile (:mod:`processors.profiles.fold`);
- ``profiles-anonymous``: anonymous id -> its activity and linked customer (stitching);
- ``profiles-seen``: event ids applied within the dedupe window (:class:`SeenEvents`).

Every write happens under :func:`streams.batching.acting_for` the batch's last message, so a
key's changelog partition is its source partition (customers' events, merges and security
flags are all keyed by customer id; anonymous activity and links by anonymous id).

Per batch (one partition of one topic): fold (:class:`ProfileEngine`), write changed states,
then, for each changed customer once (coalesced), a pipelined Redis write and a
``profile_snapshot`` event; links and merges go to the internal topics. Sends are durable
before the batch's offsets commit (Faust flushes its producer first); their futures are checked
at the next batch so a failed send stops the worker instead of passing silently.

``GET /v1/profiles/{customer_id}`` answers from the table, routed by Faust to the worker owning
the key's partition (404 if unknown).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from processors.profiles import stitching
from processors.profiles.engine import (
    BatchResult,
    ProfileEngine,
    decode_state,
    dedupe_slot,
    encode_state,
)
from processors.profiles.fold import PROFILE_EVENTS
from processors.profiles.mirror import RedisMirror, redis_for
from processors.profiles.view import profile_view, snapshot_record, with_ages
from streams.batching import BatchLane, InputEvent, LaneHandler, SeenEvents, acting_for

if TYPE_CHECKING:
    import faust

    from streams.app import AppContext

log = logging.getLogger(__name__)

NAME = "profiles"
STEP = "profiles"
#: Faust producer batch size this processor needs (see register)
PRODUCER_BATCH_BYTES = 1_000_000


class ProfilesProcessor:
    """Applies batches with the engine and publishes the effects."""

    def __init__(
        self,
        app: faust.App,
        context: AppContext,
        profiles: Any,
        anonymous: Any,
        seen: SeenEvents,
        mirror: RedisMirror,
    ) -> None:
        self.app = app
        self.context = context
        self.profiles = profiles
        self.anonymous = anonymous
        self.seen = seen
        self.mirror = mirror
        self.engine = ProfileEngine(profiles, anonymous, seen)
        #: delivery futures of sends not yet acknowledged (checked at each batch)
        self._inflight: list[Any] = []
        settings = context.settings
        self.links_topic = settings.topic(stitching.LINKS)
        self.merges_topic = settings.topic(stitching.MERGES)
        self.counts = {
            "events": 0,
            "applied": 0,
            "replays": 0,
            "duplicates": 0,
            "link_conflicts": 0,
            "links_sent": 0,
            "merges_sent": 0,
            "snapshots": 0,
        }

    def handler(self, name: str) -> Callable[[list[InputEvent]], Awaitable[None]]:
        async def handle(batch: list[InputEvent]) -> None:
            await self.apply(name, batch)

        return handle

    async def apply(self, name: str, batch: list[InputEvent]) -> None:
        result = self.engine.apply(name, batch)
        last = batch[-1]
        if name not in (stitching.LINKS, stitching.MERGES):
            # the batch's event ids, one block per batch (expired past the window)
            self.seen.write(dedupe_slot(name, last.partition), last.message, last.timestamp_ms)
        if result.changed or result.anonymous:
            with acting_for(last.message):
                for cid, state in result.changed.items():
                    self.profiles[cid.encode()] = encode_state(state)
                for aid, state in result.anonymous.items():
                    self.anonymous[aid.encode()] = encode_state(state)
        self._raise_failed_sends()
        self._inflight.extend(await self._publish(result))
        self._count(result)
        self.counts["events"] += len(batch)

    def _raise_failed_sends(self) -> None:
        """Raise the error of a send of an earlier batch that failed (the worker then stops).

        Sends are not awaited per batch: waiting for the broker's ack after every partition's
        batch made the worker wait-bound (~1k events/s). They are still durable before the
        batch's offsets move, because Faust flushes its producer before every offset commit
        (see :mod:`streams.batching`); a failed send must not pass silently, hence this check.
        """
        inflight = self._inflight
        if not inflight:
            return
        still: list[Any] = []
        for future in inflight:
            if not future.done():
                still.append(future)
            elif future.exception() is not None:
                raise future.exception()
        self._inflight = still

    async def _publish(self, result: BatchResult) -> list[Awaitable[Any]]:
        now = int(time.time() * 1000)
        entries = []
        pending: list[Awaitable[Any]] = []
        emit = self.context.emit
        for states in (result.changed, result.replayed):
            for cid, state in states.items():
                view = profile_view(cid, state)
                version = state.get("v", 0)
                entries.append((cid, view, version))
                pending.append(await emit("profile_snapshot", snapshot_record(view, version, now)))
        await self.mirror.publish(entries)
        send = self.app.producer.send
        for aid, (cid, at) in result.links.items():
            value = stitching.link_message(aid, cid, at)
            pending.append(await send(self.links_topic, aid.encode(), value, None, None, None))
        for aid, (cid, version, activity) in result.merges.items():
            value = stitching.merge_message(aid, cid, version, activity)
            pending.append(await send(self.merges_topic, cid.encode(), value, None, None, None))
        self.counts["snapshots"] += len(entries)
        self.counts["links_sent"] += len(result.links)
        self.counts["merges_sent"] += len(result.merges)
        return pending

    def _count(self, result: BatchResult) -> None:
        counts = self.counts
        counts["applied"] += result.applied
        counts["replays"] += result.replays
        counts["duplicates"] += result.duplicates
        counts["link_conflicts"] += result.link_conflicts

    def lookup(self, customer_id: str) -> tuple[dict[str, Any], int] | None:
        """The view and version of a customer this worker holds, or ``None``."""
        raw = self.profiles.get(customer_id.encode())
        if raw is None:
            return None
        state = decode_state(raw)
        return profile_view(customer_id, state), state.get("v", 0)

    def customer_ids(self) -> list[str]:
        return [key.decode() for key in list(self.profiles.keys())]

    def stats(self) -> dict[str, Any]:
        return {**self.counts, "customers": len(self.profiles), "mirror": self.mirror.stats()}


def _json_lane(context: AppContext, name: str, handler: Any) -> None:
    """Subscribe to internal JSON topic ``name`` through a batch lane of its own."""
    topic = context.topic(name)
    context.app.topics.add(topic)
    decoder = stitching.JsonDecoder(context.codec, context.dead_letters, expect=name, step=STEP)
    lane = BatchLane(decoder)
    lane.add(LaneHandler(STEP, handler), (name,))
    context.lanes[context.settings.topic(name)] = lane


def register(app: faust.App, context: AppContext) -> None:
    import faust
    from faust.web import Request, Response, View

    settings = context.settings
    partitions = settings.kafka.partitions
    # A profile change is a changelog write plus a snapshot (~1 KB each); aiokafka keeps one
    # batch in flight per partition, so with Faust's 16 KB batches the worker waited on broker
    # round trips (~3k events/s). Bigger batches are only raised here, never lowered.
    conf = app.conf
    conf.producer_max_batch_size = max(conf.producer_max_batch_size, PRODUCER_BATCH_BYTES)
    raw: faust.Schema = faust.Schema(key_serializer="raw", value_serializer="raw")
    profiles = app.Table(
        NAME,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        schema=raw,
        help="customer id -> profile (JSON)",
    )
    anonymous = app.Table(
        f"{NAME}-anonymous",
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        schema=raw,
        help="anonymous id -> its activity and linked customer (JSON)",
    )
    seen_table = app.Table(
        f"{NAME}-seen",
        partitions=partitions,
        schema=faust.Schema(key_serializer="json", value_serializer="json"),
        help="event ids applied within the dedupe window, one entry per slot and batch",
    )
    window_ms = round(settings.worker.dedupe_window_seconds * 1000)
    processor: ProfilesProcessor

    def load(customer_id: str) -> tuple[dict[str, Any], int] | None:
        return processor.lookup(customer_id)

    mirror = RedisMirror(settings, redis_for(settings), load)
    processor = ProfilesProcessor(
        app, context, profiles, anonymous, SeenEvents(seen_table, window_ms), mirror
    )
    mirror.set_id_source(processor.customer_ids)
    for name in PROFILE_EVENTS:
        context.batch_agent(name, processor.handler(name), step=STEP)
    _json_lane(context, stitching.LINKS, processor.handler(stitching.LINKS))
    _json_lane(context, stitching.MERGES, processor.handler(stitching.MERGES))
    context.stats[NAME] = processor.stats

    @app.page("/v1/profiles/{customer_id}")
    class ProfileView(View):
        """A customer's profile from the table of the worker that owns it."""

        @app.table_route(table=profiles, match_info="customer_id")
        async def get(self: View, request: Request, *args: Any, **params: Any) -> Response:
            customer_id = str(params["customer_id"])
            found = processor.lookup(customer_id)
            if found is None:
                return self.json({"error": "not_found", "customer_id": customer_id}, status=404)
            view, version = found
            return self.json(
                {**with_ages(view), "version": version, "updated_at": int(time.time() * 1000)}
            )
