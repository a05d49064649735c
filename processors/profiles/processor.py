"""Faust glue of live profiles: tables, batch lanes, publication, erasure, web view.

State (changelog-backed Faust tables in ``settings.worker.store``; keys and values are bytes,
values JSON, so the memory store holds each profile as its compact serialized form):

- ``profiles``: customer id -> profile (:mod:`processors.profiles.fold`), or the erased-marker
  of an erased customer (offsets, version, erasure time: no personal data);
- ``profiles-anonymous``: anonymous id -> its activity and linked customer (stitching);
- ``profiles-seen``: event ids applied within the dedupe window (:class:`SeenEvents`);
- ``profiles-pending``: per batch, the customers whose publication may still be due
  (:mod:`processors.profiles.publisher`).

Every write happens under :func:`streams.batching.acting_for` the batch's last message, so a
key's changelog partition is its source partition (customers' events, merges and security
flags are all keyed by customer id; anonymous activity and links by anonymous id).

Per batch (one partition of one topic): fold (:class:`ProfileEngine`, on its cache of decoded
states), erasures' effects (see below), one table write per changed customer (into the store,
and to the changelog through librdkafka, acknowledged before any offset commit:
:mod:`processors.profiles.changelog`) and one pending block and one dedupe block (the same
way, :class:`~processors.profiles.changelog.DirectJsonTable`), links and merges to the internal
topics; the changed customers join the waiting publications. The fold and the writes run under
the publication lock, so a publication never sees a cached state between them. Once the lanes
handled a fetch's batches (:func:`streams.batching.after_each_fetch`), and within a long fetch
or while idle at most ``settings.profiles.publish_interval_ms`` after a change (the next batch
handler, or a timer), the waiting customers are published once each: a partial Redis write of
the attributes their events could change (:mod:`processors.profiles.mirror`; only those are
computed, :func:`processors.profiles.view.publication`) and a ``profile_snapshot``
(through the SDK's :class:`~streams.producer.EventProducer`, librdkafka: much cheaper per
event than Faust's producer; the pending blocks wait for its acknowledgements). Why
that is still at-least-once although offsets may commit before the publication happened: the
pending blocks (module doc of :mod:`processors.profiles.publisher`): a committed batch's
customers are published either before its block is deleted or, after a crash or rebalance,
from the block on recovery; an uncommitted batch is replayed and its customers republished.
Changelog, link and merge sends are durable before the offsets they reflect commit (Faust
flushes its producer first); their futures, and the snapshots' delivery reports, are checked
later so a failed send stops the worker instead of passing silently.

Erasure (``erasure_requested``): the profile becomes an erased-marker; events of the customer
(and of anonymous ids linked to them) that occurred up to the erasure are dropped from then
on, including on replay. Before the marker is written (so a durable marker implies them), and
under the publication lock (so no waiting publication overtakes them): the customer's waiting
publication is dropped, their Redis hash deleted, an erase link sent for each linked anonymous
id (that id's owner erases its activity), optionally (``profiles.snapshot_tombstones``) a null
value for the key on the compacted ``profile_snapshot`` topic; the sends are awaited.

``GET /v1/profiles/{customer_id}`` answers from the table, routed by Faust to the worker owning
the key's partition (404 if unknown or erased).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from cxstream.errors import ServiceError
from processors.profiles import stitching
from processors.profiles.changelog import ChangelogWriter, DirectJsonTable, Sends
from processors.profiles.engine import (
    BatchResult,
    ProfileEngine,
    decode_state,
    dedupe_slot,
    encode_state,
)
from processors.profiles.fold import PROFILE_EVENTS, TOPIC_CODES, TOUCHES, Profile, has_profile
from processors.profiles.mirror import Entry, RedisMirror, needs_full_view, redis_for
from processors.profiles.publisher import Publications
from processors.profiles.view import profile_view, publication, touched_attributes, with_ages
from streams.batching import BatchLane, InputEvent, LaneHandler, SeenEvents, acting_for
from streams.producer import EventProducer

if TYPE_CHECKING:
    import faust

    from streams.app import AppContext

log = logging.getLogger(__name__)

NAME = "profiles"
STEP = "profiles"
#: attributes a batch of each topic may change (replays and recoveries: all)
_TOUCHED = {name: touched_attributes(keys) for name, keys in TOUCHES.items()}


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
        publications: Publications,
        snapshots: EventProducer,
        changelog: ChangelogWriter,
    ) -> None:
        self.app = app
        self.context = context
        self.profiles = profiles
        self.anonymous = anonymous
        self.seen = seen
        self.mirror = mirror
        self.publications = publications
        self.snapshots = snapshots
        self.changelog = changelog
        self.profiles_changelog = profiles.changelog_topic.get_topic_name()
        self.anonymous_changelog = anonymous.changelog_topic.get_topic_name()
        self.engine = ProfileEngine(
            profiles, anonymous, seen, cache_size=context.settings.profiles.cache_states
        )
        #: delivery futures of link/merge sends not yet acknowledged (checked at each batch)
        self._inflight: list[Any] = []
        settings = context.settings
        self.links_topic = settings.topic(stitching.LINKS)
        self.merges_topic = settings.topic(stitching.MERGES)
        self.snapshot_topic = settings.topic("profile_snapshot")
        self.tombstones = settings.profiles.snapshot_tombstones
        self.counts = {
            "events": 0,
            "applied": 0,
            "replays": 0,
            "duplicates": 0,
            "blocked": 0,
            "erased": 0,
            "link_conflicts": 0,
            "links_sent": 0,
            "merges_sent": 0,
            "snapshots": 0,
            "publications": 0,
            "flushes": 0,
        }

    def handler(self, name: str) -> Callable[[list[InputEvent]], Awaitable[None]]:
        async def handle(batch: list[InputEvent]) -> None:
            await self.apply(name, batch)

        return handle

    async def apply(self, name: str, batch: list[InputEvent]) -> None:
        # under the publication lock: a flush must not publish the engine's cached states
        # between their fold and this batch's publication entry (names and base versions)
        changelog = self.changelog
        sends = (
            Sends(self.profiles_changelog, changelog),
            Sends(self.anonymous_changelog, changelog),
        )
        try:
            changelog.raise_failed()  # an earlier batch's write failed: stop before more
            async with self.publications.lock:
                await self._apply(name, batch, sends)
        except BaseException:
            self.engine.clear_cache()  # cached states may be ahead of the table now
            raise
        if self.publications.due():
            await self.flush()

    async def _apply(self, name: str, batch: list[InputEvent], sends: tuple[Sends, Sends]) -> None:
        result = self.engine.apply(name, batch)
        last = batch[-1]
        if name not in (stitching.LINKS, stitching.MERGES):
            # the batch's event ids, one block per batch (expired past the window)
            self.seen.write(dedupe_slot(name, last.partition), last.message, last.timestamp_ms)
        if result.erased:
            await self._erase(result)
        if result.changed or result.anonymous:
            # into the stores, and to the changelogs by our own producer (changelog.py)
            partition = last.partition
            with acting_for(last.message):
                for states, table, sent in (
                    (result.changed, self.profiles, sends[0]),
                    (result.anonymous, self.anonymous, sends[1]),
                ):
                    if not states:
                        continue
                    store = table.data
                    items = []
                    for key, state in states.items():
                        raw_key, value = key.encode(), encode_state(state)
                        store[raw_key] = value
                        items.append((raw_key, value))
                    self.changelog.send(sent, partition, items)
        self._raise_failed_sends()
        self.publications.settle()
        self._inflight.extend(await self._send_stitching(result))
        names = _TOUCHED.get(name)
        changes: dict[str, tuple[Profile, frozenset[str] | None]] = {
            cid: (state, None) for cid, state in result.replayed.items()
        }
        for cid, state in result.changed.items():
            changes[cid] = (state, None if cid in result.erased else names)
        block = f"{TOPIC_CODES[name]}:{last.partition}:{batch[0].offset}"
        self.publications.add(last.partition, last.message, block, changes, result.base)
        self._count(result)
        self.counts["events"] += len(batch)

    async def flush(self) -> None:
        """Publish every waiting customer once (Redis, then snapshots; module doc)."""
        publications = self.publications
        async with publications.lock:
            pending, blocks = publications.take()
            if not pending and not blocks:
                return
            now = int(time.time() * 1000)
            entries: list[Entry] = []
            records: list[dict[str, Any]] = []
            profiles = self.profiles
            for cid, (_, state, names, base) in pending.items():
                if state is None:
                    state = decode_state(profiles.get(cid.encode()))
                if not has_profile(state):
                    entries.append((cid, None, 0, None, 0))  # erased: make sure it is gone
                    continue
                version = state.get("v", 0)
                # only what the write sends: the attributes its events changed, or all
                view, record = publication(
                    cid, state, None if needs_full_view(names, base) else names, version, now
                )
                entries.append((cid, view, version, names, base))
                records.append(record)
            snapshots = self.snapshots
            snapshots.produce_many("profile_snapshot", records)
            snapshots.poll(0)
            mirror = self.mirror
            # at most one write runs behind the stream: a slow Redis slows publication (and,
            # through the lock, folding) instead of queueing writes without bound
            await mirror.drain()
            written = mirror.submit(entries)
            watermark = snapshots.produced
            # the blocks are the durable record of what Redis still lacks: when Redis refused
            # the writes (they wait in the mirror's in-memory dirty set), keep them until that
            # set has been flushed, or a crash meanwhile would leave Redis stale for good
            # (found by the fault suite: SIGKILL during a Redis outage)
            publications.published(
                blocks,
                lambda: (
                    self._snapshots_sent(watermark)
                    and written.done()
                    and (written.result() or not mirror.dirty)  # result(): raises a failed write
                ),
            )
            self.counts["snapshots"] += len(records)
            self.counts["publications"] += len(entries)
            self.counts["flushes"] += 1

    def _snapshots_sent(self, watermark: int) -> bool:
        """Whether the first ``watermark`` snapshots were acknowledged; raises if one failed
        (the worker stops; the pending blocks republish them after the restart)."""
        snapshots = self.snapshots
        snapshots.poll(0)
        if snapshots.failed:
            raise ServiceError(
                f"profiles: {snapshots.failed} profile_snapshot events were not delivered"
            )
        return snapshots.delivered >= watermark

    async def _erase(self, result: BatchResult) -> None:
        """The effects of the batch's erasures, done (and acknowledged) before the markers.

        Runs under the publication lock (:meth:`apply`): no waiting publication overtakes it.
        """
        erased = result.erased
        send = self.app.producer.send
        futures: list[Awaitable[Any]] = []
        self.publications.discard(erased)
        # Redis down: the ids stay dirty; the retry finds no profile and deletes the hash
        await self.mirror.delete(erased)
        for cid, (at, linked) in erased.items():
            if self.tombstones:
                futures.append(
                    await send(self.snapshot_topic, cid.encode(), None, None, None, None)
                )
            for aid in linked:
                value = stitching.link_message(aid, cid, at, erase=True)
                futures.append(await send(self.links_topic, aid.encode(), value, None, None, None))
        if futures:
            await asyncio.gather(*futures)
        self.counts["erased"] += len(erased)

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

    async def _send_stitching(self, result: BatchResult) -> list[Awaitable[Any]]:
        pending: list[Awaitable[Any]] = []
        send = self.app.producer.send
        for aid, (cid, at) in result.links.items():
            value = stitching.link_message(aid, cid, at)
            pending.append(await send(self.links_topic, aid.encode(), value, None, None, None))
        for aid, (cid, version, activity) in result.merges.items():
            value = stitching.merge_message(aid, cid, version, activity)
            pending.append(await send(self.merges_topic, cid.encode(), value, None, None, None))
        self.counts["links_sent"] += len(result.links)
        self.counts["merges_sent"] += len(result.merges)
        return pending

    def _count(self, result: BatchResult) -> None:
        counts = self.counts
        counts["applied"] += result.applied
        counts["replays"] += result.replays
        counts["duplicates"] += result.duplicates
        counts["blocked"] += result.blocked
        counts["link_conflicts"] += result.link_conflicts

    def lookup(self, customer_id: str) -> tuple[dict[str, Any], int] | None:
        """The view and version of a customer this worker holds, or ``None`` (also erased)."""
        raw = self.profiles.get(customer_id.encode())
        if raw is None:
            return None
        state = decode_state(raw)
        if not has_profile(state):
            return None
        return profile_view(customer_id, state), state.get("v", 0)

    def customer_ids(self) -> list[str]:
        return [key.decode() for key in list(self.profiles.keys())]

    def stats(self) -> dict[str, Any]:
        return {
            **self.counts,
            "customers": len(self.profiles),
            "waiting": len(self.publications.pending),
            "cache": {
                "states": len(self.engine.cache.entries),
                "hits": self.engine.cache.hits,
                "misses": self.engine.cache.misses,
            },
            "mirror": self.mirror.stats(),
            "changelog": self.changelog.stats(),
        }


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
    json_schema: faust.Schema = faust.Schema(key_serializer="json", value_serializer="json")
    seen_table = app.Table(
        f"{NAME}-seen",
        partitions=partitions,
        schema=json_schema,
        help="event ids applied within the dedupe window, one entry per slot and batch",
    )
    pending_table = app.Table(
        f"{NAME}-pending",
        partitions=partitions,
        schema=json_schema,
        help="per batch: customers whose publication may still be due",
    )
    window_ms = round(settings.worker.dedupe_window_seconds * 1000)
    processor: ProfilesProcessor

    def load(customer_id: str) -> tuple[dict[str, Any], int] | None:
        return processor.lookup(customer_id)

    mirror = RedisMirror(settings, redis_for(settings), load)
    interval_ms = settings.profiles.publish_interval_ms
    source = settings.topic("channel_interaction")

    def owned() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == source}

    changelog = ChangelogWriter(settings)
    # dedupe and pending blocks, written once per batch: librdkafka too (changelog.py)
    publications = Publications(
        DirectJsonTable(pending_table, changelog), interval_ms, source, owned
    )
    # snapshots go through the SDK's librdkafka producer: a third of the Python cost per event
    # of Faust's aiokafka producer, and their durability is the pending blocks' (publisher)
    snapshots = EventProducer(settings, context.codec)
    seen = SeenEvents(DirectJsonTable(seen_table, changelog), window_ms)
    # the changelog writes are durable before any offset commit, like Faust's own (changelog.py)
    changelog.hook_into(app.producer)
    processor = ProfilesProcessor(
        app, context, profiles, anonymous, seen, mirror, publications, snapshots, changelog
    )
    mirror.set_id_source(processor.customer_ids)

    async def forget_cached() -> None:
        processor.engine.clear_cache()  # recovered tables may differ from what was cached

    profiles.on_recover(forget_cached)
    anonymous.on_recover(forget_cached)
    for name in PROFILE_EVENTS:
        context.batch_agent(name, processor.handler(name), step=STEP)
    _json_lane(context, stitching.LINKS, processor.handler(stitching.LINKS))
    _json_lane(context, stitching.MERGES, processor.handler(stitching.MERGES))
    context.stats[NAME] = processor.stats

    async def publish_fetched() -> None:
        # what the last fetch changed, published now rather than by the next tick (bench
        # profiles at 10k/s: fetches came every 12-27 ms and a change waited for the interval)
        if processor.publications.pending:
            await processor.flush()

    context.after_each_fetch(publish_fetched)

    # ticks at a quarter of the interval: a change waits interval..1.25x interval, not up to 2x
    @app.timer(interval_ms / 4000)
    async def publish_waiting() -> None:
        if processor.publications.due():
            await processor.flush()
        processor.publications.settle()  # also while no batches arrive

    async def on_revoked(sender: Any, revoked: Any, **_: Any) -> None:
        # revoked partitions' waiting publications are the new owner's (their blocks)
        publications.revoked({tp.partition for tp in revoked})
        processor.engine.clear_cache()  # the new owner may change what is cached here
        changelog.flush()  # the new owner recovers every state written here

    async def on_shutdown(sender: Any, **_: Any) -> None:
        # a clean stop publishes what waits (a crash leaves it to the pending blocks)
        try:
            await processor.flush()
            await mirror.drain()
            snapshots.flush(10)
            changelog.flush(10)
            processor.publications.settle()
        except Exception as exc:  # the pending blocks still cover it
            log.warning("profiles: publishing at shutdown failed: %r", exc)

    app.on_partitions_revoked.connect(cast(Any, on_revoked))
    app.on_before_shutdown.connect(cast(Any, on_shutdown))

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
