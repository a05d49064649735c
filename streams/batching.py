"""Batched, dead-lettering input for Faust workers, and the fast batch lane.

Faust's per-event path costs far more than decoding (BRIEF §3), so processors work per batch.
Two ways, both decoding with our codec and dead-lettering bad messages (:class:`BatchDecoder`):

1. **Batch lane** (``AppContext.batch_agent``; what processors use): the worker's consumer
   (:func:`install_batch_lanes`) hands each partition's fetched messages to the processor in one
   call and acks them after it returned. Measured here (2 cores, one local Kafka 4.1 broker,
   channel_counts with decode, checks, dedupe and table writes): ~40k events/s, against ~5k
   events/s for path 2 and ~65-85k events/s for raw confluent-kafka consume + decode.
2. **Faust stream** (``AppContext.batches`` over an agent's stream, ``noack_take``): for
   processors that need Faust's stream operators; Faust's per-event cost stays.

Acknowledgement (read from faust/streams.py and transport/consumer.py, faust-streaming 0.15):
``Stream.take()`` and ``take_events()`` ack a batch in the ``finally`` that follows their
``yield``, i.e. when the agent asks for the next batch *or when the generator is closed*, which
also happens after the agent body raised: a batch that crashed half-way would be acked and its
offsets committed. So path 2 uses ``noack_take()`` and acks explicitly after the body finished;
the lane acks after the handler returned. Both wait for the dead letters of the batch to be
acknowledged by the broker first. Faust then commits, every ``broker_commit_every`` acks (in a
task beside the drain loop, not awaited in it) or ``broker_commit_interval`` seconds, the
highest contiguous acked offset per partition, and
flushes its producer before committing (``Consumer._commit_offsets`` -> ``producer.flush()``),
so table changelog writes and dead letters of a batch are durable before its offsets move.
Delivery is at-least-once; processors make their effects idempotent (offset watermark in the
same table value as the effect, and :class:`SeenEvents` for repeated event ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cxstream.errors import CxStreamError, DecodeError, ValidationError
from streams.codec import AvroCodec, DecodedEvent
from streams.complete_flush import install_complete_flush
from streams.dlq import DeadLetterQueue, SourceMessage
from streams.eager_fetch import install_eager_fetch
from streams.fast_zstd import install_fast_zstd

log = logging.getLogger(__name__)

#: a processor's own semantic check of a decoded event; raises ``ValidationError``
Check = Callable[[DecodedEvent], None]


@dataclass(slots=True)
class InputEvent:
    """A decoded, checked input event with where it came from (treat it as read-only).

    Not a frozen dataclass: a frozen one's ``__init__`` sets each field through
    ``object.__setattr__``, 1.1 us per event against 0.23 us (every input event makes one).
    """

    name: str
    record: dict[str, Any]
    schema_id: int
    key: bytes | None
    topic: str
    partition: int
    offset: int
    #: broker/producer timestamp of the message (epoch ms), the stream time of dedupe windows
    timestamp_ms: int
    #: the Faust message, for :func:`acting_for` (table writes go to its partition)
    message: Any


def decode_input(codec: AvroCodec, value: bytes | None, expect: frozenset[str]) -> DecodedEvent:
    """Decode one message value of an input topic; raises ``DecodeError`` with a reason."""
    if value is None:
        raise DecodeError("message has no value (tombstone)", reason="tombstone")
    if not value:
        raise DecodeError("message value is empty", reason="empty")
    decoded = codec.decode(value)
    if decoded.name not in expect:
        raise DecodeError(
            f"schema id {decoded.schema_id} is a {decoded.name} event, this topic carries "
            f"{' / '.join(sorted(expect))}",
            reason="wrong_event_type",
        )
    return decoded


class BatchDecoder:
    """Decodes a batch of Faust events, dead-letters the bad ones and returns the good ones."""

    def __init__(
        self,
        codec: AvroCodec,
        dead_letters: DeadLetterQueue,
        *,
        expect: str | Iterable[str],
        step: str,
        check: Check | None = None,
    ) -> None:
        self.codec = codec
        self.dead_letters = dead_letters
        self.expect = frozenset((expect,) if isinstance(expect, str) else expect)
        self.step = step
        self.check = check

    async def decode(self, messages: Sequence[Any]) -> list[InputEvent]:
        """Good events of Faust ``messages``; the bad ones are dead-lettered (and delivered)."""
        good: list[InputEvent] = []
        pending: list[Awaitable[Any]] = []
        append = good.append
        codec, expect, check = self.codec, self.expect, self.check
        decode = codec.decode
        for message in messages:
            value = message.value
            try:
                # the common case inline (3.7 -> 1.8 us per event besides the Avro decode);
                # decode_input raises the reasons of the others
                if not value:
                    decode_input(codec, value, expect)
                decoded = decode(value)
                if decoded.name not in expect:
                    decode_input(codec, value, expect)
                if check is not None:
                    check(decoded)
            except (DecodeError, ValidationError) as exc:
                source = SourceMessage.from_faust(message)
                log.warning(
                    "%s: %s[%d]@%d -> dead letters: %s",
                    self.step,
                    message.topic,
                    message.partition,
                    message.offset,
                    exc,
                )
                pending.append(await self.dead_letters.send(source, exc, step=self.step))
                continue
            name, record, schema_id = decoded
            append(
                InputEvent(
                    name,
                    record,
                    schema_id,
                    message.key,
                    message.topic,
                    message.partition,
                    message.offset,
                    round((message.timestamp or 0) * 1000),
                    message,
                )
            )
        # the bad messages are acked with the batch: their dead letters must be durable first
        await self.dead_letters.delivered(pending)
        return good

    async def checked(self, events: list[InputEvent], check: Check, step: str) -> list[InputEvent]:
        """Events of ``events`` passing ``check``; the others are dead-lettered as ``step``."""
        passed: list[InputEvent] = []
        pending: list[Awaitable[Any]] = []
        for event in events:
            try:
                check(DecodedEvent(event.name, event.record, event.schema_id))
            except ValidationError as exc:
                message = event.message
                log.warning(
                    "%s: %s[%d]@%d -> dead letters: %s",
                    step,
                    message.topic,
                    message.partition,
                    message.offset,
                    exc,
                )
                source = SourceMessage.from_faust(message)
                pending.append(await self.dead_letters.send(source, exc, step=step))
                continue
            passed.append(event)
        await self.dead_letters.delivered(pending)
        return passed


async def batches(
    stream: Any, decoder: BatchDecoder, *, size: int, within: float
) -> AsyncIterator[list[InputEvent]]:
    """Decoded batches of at most ``size`` events (or what arrived ``within`` seconds).

    Events of a batch are acked after the consumer's body for the batch returns (module doc).
    Empty batches (every message dead-lettered) are acked without being yielded.
    """
    async for events in stream.noack_take(size, within):
        good = await decoder.decode([event.message for event in events])
        if good:
            yield good
        # reached only when the body finished without raising: now the offsets may move
        for event in events:
            await stream.ack(event)


@contextlib.contextmanager
def acting_for(message: Any) -> Iterator[None]:
    """Make (an event of) ``message`` Faust's current event while writing tables for it.

    Faust picks a table key's changelog partition (and RocksDB partition store) from the current
    event, a context variable that batch processing does not set per event; writing for the
    right message keeps every table entry in the partition of the source events it counts.
    """
    from faust.streams import _current_event

    event = MessageEvent(message)
    # Faust types the variable as holding EventT; tables read only ``.message`` from it
    token = _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    try:
        yield
    finally:
        _current_event.reset(token)


def group_by_partition(batch: Sequence[InputEvent]) -> dict[int, list[InputEvent]]:
    groups: dict[int, list[InputEvent]] = {}
    for item in batch:
        groups.setdefault(item.partition, []).append(item)
    return groups


class SeenEvents:
    """Which event ids a processor has already applied, per partition, for a bounded window.

    Makes processors idempotent per event id: a second message with an id seen within
    ``window_ms`` of stream time (message timestamps) is a duplicate (client retry, replay of
    a re-sent event). The ids live in a Faust table (so restarts and rebalances recover them)
    as one entry per partition and batch, ``"<partition>:<first offset>" -> [[id, offset],
    ...]``: one changelog message per batch instead of one per event. Blocks older than the
    window are deleted as the partition's stream time moves on. ``offset`` tells a duplicate
    (same id, other offset) from a replay of the very message that was recorded before a
    crash (same id, same offset), which must be applied again if its effect was lost.
    """

    def __init__(self, table: Any, window_ms: int) -> None:
        self.table = table
        self.window_ms = window_ms
        self._index: dict[int, dict[str, int]] = {}
        self._blocks: dict[int, deque[tuple[str, int, list[str]]]] = {}
        self._pending: dict[int, list[list[Any]]] = {}
        table.on_recover(self._rebuild)

    def first_offset(self, partition: int, event_id: str) -> int | None:
        """Offset at which ``event_id`` was first applied in ``partition``, if within window."""
        return self._index.get(partition, {}).get(event_id)

    def note(self, partition: int, event_id: str, offset: int) -> None:
        """Remember an applied event; written to the table by :meth:`write`."""
        self._index.setdefault(partition, {})[event_id] = offset
        self._pending.setdefault(partition, []).append([event_id, offset])

    def write(self, partition: int, message: Any, timestamp_ms: int) -> None:
        """Write the ids noted for ``partition`` as one block and expire old blocks.

        ``message`` is a Faust message of that partition (table writes go to its partition).
        """
        noted = self._pending.pop(partition, None)
        blocks = self._blocks.setdefault(partition, deque())
        with acting_for(message):
            if noted:
                key = f"{partition}:{noted[0][1]}"
                self.table[key] = {"at": timestamp_ms, "ids": noted}
                blocks.append((key, timestamp_ms, [event_id for event_id, _ in noted]))
            index = self._index.get(partition, {})
            while blocks and blocks[0][1] < timestamp_ms - self.window_ms:
                key, _, ids = blocks.popleft()
                for event_id in ids:
                    index.pop(event_id, None)
                with contextlib.suppress(KeyError):
                    del self.table[key]

    async def _rebuild(self) -> None:
        # after recovery the table holds the blocks of the partitions this worker now owns
        self._index.clear()
        self._blocks.clear()
        self._pending.clear()
        entries = []
        for key, value in self.table.items():
            partition, first = (int(part) for part in str(key).split(":"))
            entries.append((partition, first, key, value))
        for partition, _, key, value in sorted(entries, key=lambda e: (e[0], e[1])):
            index = self._index.setdefault(partition, {})
            for event_id, offset in value["ids"]:
                index.setdefault(event_id, offset)
            ids = [event_id for event_id, _ in value["ids"]]
            self._blocks.setdefault(partition, deque()).append((key, value["at"], ids))
        log.info(
            "dedupe index rebuilt: %d ids in %d partitions",
            sum(map(len, self._index.values())),
            len(self._index),
        )


# -- the batch lane: Faust's consumer hands whole fetched batches to processors ------------------


class MessageEvent:
    """The part of a Faust event that tables and :class:`BatchDecoder` use: its message."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, message: Any) -> None:
        self.message = message


class BatchAbandonedError(CxStreamError):
    """Raised by a lane handler that gives up on its batch because a rebalance began.

    The lane then neither runs the remaining handlers nor acks the batch: its messages are
    fetched again from the committed offsets (by this worker or the partition's next owner) and
    applied again, idempotently.
    """


#: whether the batch being handled still belongs to the consumer's current generation
_batch_current: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar(
    "cx_batch_current", default=None
)


def batch_still_current() -> bool:
    """``False`` once a rebalance began after the handled batch was fetched.

    A handler that waits (for Redis, say) checks it and raises :class:`BatchAbandonedError`: a batch
    that goes on past a revocation would be acked for partitions this worker no longer owns,
    with table writes that the partition's recovery does not see (lost updates).
    """
    current = _batch_current.get()
    return True if current is None else current()


#: a processor's batch function; may be a coroutine function
BatchHandler = Callable[[list[InputEvent]], Awaitable[None] | None]


@dataclass
class LaneHandler:
    """One processor's share of a lane: its step name, its own check and its batch function."""

    step: str
    handler: BatchHandler
    check: Check | None = None
    #: events this handler applied (for stats)
    applied: int = 0


@dataclass
class BatchLane:
    """Decode, dead-letter, apply and ack one fetched batch of one partition.

    A topic has one lane per worker; every processor of the worker that reads the topic adds a
    :class:`LaneHandler`. Messages are decoded once; each handler's check runs on its own, so an
    event one processor rejects (dead-lettered under that processor's step) still reaches the
    others. The batch is acked after every handler returned.
    """

    decoder: BatchDecoder
    handlers: list[LaneHandler] = field(default_factory=list)
    batches: int = 0

    @property
    def applied(self) -> int:
        """Events applied by the lane's handlers (summed over handlers)."""
        return sum(handler.applied for handler in self.handlers)

    def add(self, handler: LaneHandler, expect: Iterable[str]) -> None:
        self.handlers.append(handler)
        self.decoder.expect = self.decoder.expect | frozenset(expect)

    async def run(
        self, consumer: Any, messages: list[Any], current: Callable[[], bool] | None = None
    ) -> bool:
        """Apply ``messages`` and ack them; ``False`` if the batch was abandoned, unacked.

        ``current`` tells whether the consumer's generation is still the one the messages were
        fetched in; once it is not (a rebalance began while a handler waited), the remaining
        handlers are skipped and nothing is acked (see :class:`BatchAbandonedError`).
        """
        token = _batch_current.set(current)
        try:
            good = await self.decoder.decode(messages)
            if good:
                for lane_handler in self.handlers:
                    if current is not None and not current():
                        return self._abandon(consumer, messages, "rebalance")
                    events = good
                    if lane_handler.check is not None:
                        events = await self.decoder.checked(
                            good, lane_handler.check, lane_handler.step
                        )
                        if not events:
                            continue
                    try:
                        result = lane_handler.handler(events)
                        if result is not None:
                            await result
                    except BatchAbandonedError as exc:
                        return self._abandon(consumer, messages, str(exc))
                    lane_handler.applied += len(events)
        finally:
            _batch_current.reset(token)
        if current is not None and not current():
            return self._abandon(consumer, messages, "rebalance")
        self.batches += 1
        # only now, after the effects and the dead letters, may the offsets move
        on_message_out = consumer.app.sensors.on_message_out
        for message in messages:
            if consumer.ack(message):
                on_message_out(message.tp, message.offset, message)
        return True

    @staticmethod
    def _abandon(consumer: Any, messages: list[Any], why: str) -> bool:
        first = messages[0]
        log.info(
            "batch %s[%d]@%d..%d not acked (%s): fetched again after the rebalance",
            first.topic, first.partition, first.offset, messages[-1].offset, why,
        )  # fmt: skip
        # not acked, yet no longer in flight: the revocation must not wait for them
        unacked = consumer._unacked_messages
        for message in messages:
            unacked.discard(message)
        return False


#: attribute of the Faust app holding ``worker.fetch_max_wait_ms`` (set by ``create_app``)
FETCH_MAX_WAIT_ATTR = "cx_fetch_max_wait_ms"
#: attribute of the Faust app holding ``worker.fetch_min_bytes`` (set by ``create_app``)
FETCH_MIN_BYTES_ATTR = "cx_fetch_min_bytes"
#: attribute of the Faust app holding its :class:`streams.gc_tuning.BetweenBatchesCollector`
#: (set by ``create_app`` when ``worker.gc_between_batches`` is on)
GC_BETWEEN_BATCHES_ATTR = "cx_gc_between_batches"
#: how long the drain loop waits for records before it counts as idle (Faust waits 1 s): with
#: 1 s the idle collection of a burst's survivors (175 ms) began just as live traffic resumed
#: after a 1-2 s lull in ``bench profiles``; an empty wait costs one ``getmany`` hand-over
IDLE_WAIT_SECONDS = 0.25


def install_batch_lanes(app: Any) -> dict[str, BatchLane]:
    """Give ``app`` a consumer that feeds batch lanes; returns the topic -> lane registry.

    Must run before anything touches ``app.transport`` (``create_app`` does it first thing).
    """
    transport = _batching_transport_class()(app.conf.broker_consumer, app)
    app.transport = transport
    _tolerate_unknown_changelog_partitions()
    install_complete_flush()
    install_eager_fetch()
    install_fast_zstd()
    lanes: dict[str, BatchLane] = transport.batch_lanes
    return lanes


#: a coroutine function the consumer awaits after handling each fetched batch
AfterFetch = Callable[[], Awaitable[None]]


def after_each_fetch(app: Any, hook: AfterFetch) -> None:
    """Have ``app``'s consumer await ``hook()`` once the lanes handled a fetch's messages.

    That is the moment work deferred across a fetch's partitions is due without waiting for a
    timer (profiles publish there: everything folded from the fetch at once). An exception
    stops the consumer, as one raised by a lane handler does.
    """
    app.transport.after_fetch_hooks.append(hook)


@functools.cache
def _tolerate_unknown_changelog_partitions() -> None:
    """Make Faust's source/changelog partition check treat 0 changelog partitions as unknown.

    Faust compares the partition counts of a table's source topic and changelog from the group
    coordinator's metadata snapshot, taken at the last rebalance. A changelog Faust created at
    start-up can be in that snapshot with 0 partitions (created, leader not elected yet), and it
    stays so until the next metadata change: the first table write then raised
    ``PartitionsMismatch`` (seen in CI: "... changelog topic has 0 partitions") and crashed the
    worker. A real mismatch (both counts known and different) still raises.
    """
    from faust.tables.base import Collection

    original = Collection._verify_source_topic_partitions

    def verify(self: Any, source_topic: str) -> None:
        change_n = self.app.consumer.topic_partitions(self.changelog_topic_name)
        if change_n == 0:
            return  # not known yet; checked again on the next write
        original(self, source_topic)

    Collection._verify_source_topic_partitions = verify  # type: ignore[method-assign]


@functools.cache
def _batching_transport_class() -> type:
    # classes are built on first use: importing faust parses argv and must not happen on import
    from faust.transport.drivers import aiokafka as faust_aiokafka

    class BatchingConsumer(faust_aiokafka.Consumer):
        """Faust's aiokafka consumer, with whole per-partition fetches for batch-lane topics.

        Faust's own path costs ~160 us per message (BRIEF §3: a wait_first per message in
        ``_drain_messages``, then conductor, channel queue and stream hops). For topics that
        have a :class:`BatchLane`, this loop hands the fetched messages of a partition to the
        lane in one call; everything else (tables' changelogs during recovery, agents' topics)
        goes through Faust's per-message path unchanged. Kept from Faust: group membership,
        assignment, rebalance flow control (generation ids, suspend/seek), read-offset gaps,
        unacked tracking, acks and offset commits, sensors.
        """

        async def _drain_messages(self, fetcher: Any) -> None:
            lanes: dict[str, BatchLane] = self.transport.batch_lanes  # type: ignore[attr-defined]
            transport: Any = self.transport
            after_fetch: list[AfterFetch] = transport.after_fetch_hooks
            callback = self.callback
            consumer_should_stop = self._stopped.is_set
            fetcher_should_stop = fetcher._stopped.is_set
            read_offset = self._read_offset
            acks_enabled_for = self.app.topics.acks_enabled_for
            to_message = self._to_message
            unacked_add = self._unacked_messages.add
            on_message_in = self.app.sensors.on_message_in
            collector = getattr(self.app, GC_BETWEEN_BATCHES_ATTR, None)
            after_batch = None if collector is None else collector.after_batch
            when_idle = None if collector is None else collector.when_idle
            try:
                while not (consumer_should_stop() or fetcher_should_stop()):
                    if after_batch is not None:
                        after_batch()  # the last fetch's events are gone: a cheap collection
                    records, active = await self._wait_next_records(IDLE_WAIT_SECONDS)
                    await self.sleep(0)
                    if not records and when_idle is not None:
                        when_idle()  # nothing came for a whole wait: collect while nobody waits
                    if records is None or self.should_stop:
                        continue
                    if not self.flow_active:
                        await self.perform_seek()
                        continue
                    generation_id = self.app.consumer_generation_id

                    def current(generation: int = generation_id) -> bool:
                        return self.flow_active and self.app.consumer_generation_id == generation

                    for tp, tp_records in records.items():
                        if not self.flow_active or (
                            self.app.consumer_generation_id != generation_id
                        ):
                            break  # rebalancing: Faust seeks back to committed offsets
                        if not (active is None or tp in active or tp in self._buffered_partitions):
                            # paused since the fetch (table recovery): read them again. Faust
                            # then seeks to the committed offsets, but a partition with none
                            # committed stays at its fetch position, after these records: the
                            # fault suite lost a partition's first ~800 events that way
                            first_dropped = tp_records[0].offset
                            log.info(
                                "%s[%d]: %d records fetched for a paused partition; seek back "
                                "to %d",
                                tp.topic, tp.partition, len(tp_records), first_dropped,
                            )  # fmt: skip
                            if tp in self.assignment():  # revoked meanwhile: its owner reads it
                                from aiokafka.errors import IllegalStateError

                                with contextlib.suppress(IllegalStateError):  # revoked just now
                                    await self.seek(tp, first_dropped)
                            continue
                        self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                        r_offset = read_offset[tp]
                        messages = [
                            to_message(tp, record)
                            for record in tp_records
                            if r_offset is None or record.offset >= r_offset
                        ]
                        if not messages:
                            continue
                        first = messages[0].offset
                        if r_offset and first - r_offset > 1 and acks_enabled_for(tp.topic):
                            # offsets the broker did not return count as acked (Faust's rule
                            # for compacted topics and transaction markers): make it visible
                            log.info(
                                "%s[%d]: offsets %d..%d not in the fetch, treated as acked",
                                tp.topic, tp.partition, r_offset + 1, first - 1,
                            )  # fmt: skip
                            await self._add_gap(tp, r_offset + 1, first)
                        if self._commit_every is not None and self._n_acked >= self._commit_every:
                            self._n_acked = 0
                            self._commit_beside()
                        lane = lanes.get(tp.topic)
                        if lane is None:
                            for message in messages:
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                                read_offset[tp] = message.offset
                            continue
                        for message in messages:
                            message.tracked = True
                            unacked_add(message)
                            on_message_in(tp, message.offset, message)
                        read_offset[tp] = messages[-1].offset
                        if not await lane.run(self, messages, current):
                            break  # the rebalance seeks back to the committed offsets
                        # a lane's handlers rarely suspend, so a fetch's batches ran without
                        # letting the loop serve background writers (Redis mirror, snapshot
                        # and commit tasks) until the next fetch: bench profiles' worker waited
                        # 1.4-1.7 s of a 6 s run for Redis writes, 0.37-0.41 s with this yield
                        await asyncio.sleep(0)
                    for hook in after_fetch:
                        await hook()
            except self.consumer_stopped_errors:
                if self.transport.app.should_stop:
                    return
                raise
            except asyncio.CancelledError:
                if self.transport.app.should_stop:
                    return
                raise

        _beside: asyncio.Task[Any] | None = None
        _crashing: asyncio.Future[Any] | None = None

        def _commit_beside(self) -> None:
            """The commit every ``broker_commit_every`` acks, in a task of its own.

            Faust awaits it in the drain loop: a producer flush and a broker round trip, 30-200
            ms at 10k events/s, every second, during which nothing was folded (bench profiles:
            produce -> Redis p99 458 -> 155 ms once it ran beside). Faust's commit timer already
            commits beside the loop the same way; commits serialise themselves
            (``maybe_wait_for_commit_to_finish``) and take only acked offsets, so
            at-least-once is unchanged.
            """
            if self._beside is not None and not self._beside.done():
                return  # one is running: it takes what is acked by the time it gets there
            self._beside = task = asyncio.ensure_future(self.commit())
            task.add_done_callback(self._commit_done)

        def _commit_done(self, task: asyncio.Task[Any]) -> None:
            exc = None if task.cancelled() else task.exception()
            if exc is None:
                return
            log.error("offset commit failed: %r", exc)
            self._crashing = asyncio.ensure_future(self.crash(exc))  # as if it was awaited

    class ShortWaitConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        """Faust's consumer thread with ``worker.fetch_max_wait_ms`` instead of its fixed 1.5 s,
        and ``worker.fetch_min_bytes`` (Faust leaves aiokafka's 1)."""

        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # read by AIOKafkaConsumer.start() when it builds its fetcher (not started yet)
            consumer._fetch_max_wait_ms = getattr(self.app, FETCH_MAX_WAIT_ATTR, 1500)
            consumer._fetch_min_bytes = getattr(self.app, FETCH_MIN_BYTES_ATTR, 1)
            return consumer

    BatchingConsumer._new_consumer_thread = (  # type: ignore[method-assign]
        lambda self: ShortWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)
    )

    class BatchingTransport(faust_aiokafka.Transport):
        Consumer = BatchingConsumer

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.batch_lanes: dict[str, BatchLane] = {}
            self.after_fetch_hooks: list[AfterFetch] = []

    return BatchingTransport
