"""The ClickHouse sink: Kafka event topics -> raw tables (and, through materialized views, the
KPI rollups), with no loss and no duplicates.

A plain confluent-kafka consumer group (``enable.auto.commit=False``), not Faust: a sink needs
no tables or agents, and consuming whole batches is many times faster than Faust's per-event path.

How a batch goes:

1. ``consume()`` until ``sink_batch_max_rows`` messages or ``sink_batch_max_seconds`` passed.
2. Each message is decoded with :class:`~streams.codec.AvroCodec` and turned into a row of its
   event type's table (:mod:`sinks.clickhouse.rows`). Bytes that do not decode, and values no
   column can hold, go to the dead-letter topic with the headers of :mod:`streams.dlq`.
   Messages of the dead-letter topic itself become rows of ``dead_letter``.
3. Rows whose offsets already landed are dropped (the fence, below), then one columnar
   INSERT per table. A block ClickHouse rejects is bisected until the rejected
   rows are isolated; they go to the dead-letter topic with the server's error (reason
   ``clickhouse_rejected``) and the rest lands.
4. Dead letters are flushed and acknowledged, then offsets are committed: only after
   ClickHouse acknowledged every insert of the batch.

No duplicates. The deduplication identity of a row is its Kafka ``(topic, partition,
offset)``. Every INSERT also writes, through a materialized view in the same statement, the
offsets it carried to ``sink_offsets``. Before the first insert for a newly assigned partition,
and before every retry (an insert can succeed on the server and still fail here), the sink reads
which offsets at or after its position already landed and skips them. So a replay after a
crash, a rebalance or a retried batch never inserts a row twice, and the SummingMergeTree
rollups (which would count a re-inserted row twice) stay exact. A retry reuses the batch
already built, so it carries the same identity. On top of that the raw tables are
ReplacingMergeTree by ``event_id`` (queried with FINAL), which also collapses an event that a
producer re-sent under a new offset (the count rollups cannot see those; see the migrations).
ClickHouse's own insert deduplication is not used: on 18.16 it needs Replicated tables, and an
``ALTER ... DELETE`` does not clear its checksums (BRIEF §4).

No loss, bounded memory. While ClickHouse is unreachable the sink keeps the batches in the
workers and the one built meanwhile (nothing more), pauses every assigned partition
(``consumer.pause``) so nothing more is fetched, retries with exponential backoff
(``sink_retry_initial_seconds`` doubling up to ``sink_retry_max_seconds``) while still polling
so it stays in the group, and resumes by itself once the batch is in.
Partitions revoked meanwhile are dropped from the batch, uncommitted, for their new owner.

Threads: the thread calling :meth:`ClickHouseSink.run` consumes, decodes and builds the next
batch while ``clickhouse.insert_connections`` worker threads (each with its own connection)
insert the previous ones, so ClickHouse's processing (materialized views included) overlaps
with consumption and with the client-side packing of another batch; offsets are still
committed in batch order, by the consuming thread: a batch is committed only after it and
every earlier batch were delivered, and after a batch is given up no later one is committed.
A rebalance waits for the batches in the workers (and commits them while the partitions are
still ours) before the new owner reads the fence.

Defaults (``cxstream bench sink --opt sweep=true``, 2 cores, Kafka 4.1, ClickHouse 18.16, 600k
events): ``sink_batch_max_rows=50000`` (5000: 62k events/s, 20000: 83k, 50000: 95k, 100000:
95k; the server spends about half the CPU per row on 50k-row parts that it does on 20k-row
ones) and ``sink_batch_max_seconds=0.5`` (a batch is never older than that before its insert
starts, so below 100k events/s batches are cut by time, not size).

Tombstones (null values, the delete markers of compacted topics such as ``profile_snapshot``
when ``profiles.snapshot_tombstones`` is on) are not events: they are counted
(``SinkStats.tombstones``), committed with their batch and never dead-lettered.

Right to erasure (:mod:`cxstream.erasure`): events of an erased customer that occurred at or
before the erasure are dropped while the batch is built (counted as ``erased``, neither
inserted nor dead-lettered), so a replay of Kafka cannot bring the customer back. The block list
is read from ClickHouse ``erased_customers`` or the Redis set (``erasure.blocklist_source``)
before the first batch and again every ``erasure.blocklist_refresh_seconds`` by the insert
thread; the hot path is one dictionary lookup per event while the list is non-empty. A batch
built before a refresh that changed the list is filtered again before its insert, and a refresh
that fails holds the insert back like an outage (inserting with a list that may be stale could
resurrect a customer). The erasure processor waits one refresh interval after marking before it
deletes (``processors/erasure``).

Telemetry: each acknowledged batch adds one row per source topic to ``sink_batches`` (rows,
fenced replays, dead letters, attempts, insert and batch latency, delay from ``occurred_at``).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from cxstream.erasure import (
    CLEAR_ID_COLUMNS,
    PSEUDONYM_COLUMNS,
    BlockList,
    ErasureLedger,
    RedisBlockListStore,
)
from cxstream.errors import DecodeError, ServiceError
from cxstream.settings import Settings
from sinks.clickhouse.backend import ClickHouseBackend, make_backend
from sinks.clickhouse.errors import (
    ClickHouseError,
    ClickHouseRejectedError,
    ClickHouseUnavailableError,
)
from sinks.clickhouse.migrations import migrate
from sinks.clickhouse.rows import (
    DEAD_LETTER_COLUMNS,
    Origin,
    RowBuilder,
    TableBatch,
    dead_letter_row,
    fields_from_records,
    take,
)
from streams.codec import HEADER_SIZE, AvroCodec, ColumnsPlan
from streams.dlq import DLQ_TOPIC, H_ERROR_REASON, DeadLetter, SourceMessage, build_dead_letter
from streams.gc_tuning import tuned_garbage_collector
from streams.kafka_config import confluent_config
from streams.registry import EmbeddedRegistry

log = logging.getLogger(__name__)

STEP = "clickhouse_sink"
DEAD_LETTER_TABLE = "dead_letter"
TopicKey = tuple[str, int]
#: per event type: field columns (sinks.clickhouse.rows.FieldColumns) and the Kafka
#: coordinates and writer schema id of every record, as parallel lists (no per-row objects)
_Grouped = dict[str, tuple[dict[str, list[Any]], list[str], list[int], list[int], list[int]]]
_BATCH_COLUMNS = (
    "at", "at_ms", "group_id", "worker", "target", "rows", "fenced_rows", "dead_letters",
    "attempts", "insert_ms", "batch_ms", "delay_ms_max", "delay_ms_sum",
)  # fmt: skip


@dataclass
class SinkStats:
    """Counters since the sink started (what a benchmark or a health check reports)."""

    consumed: int = 0
    inserted: int = 0
    fenced: int = 0
    dead_letters: int = 0
    #: events of erased customers dropped (the block list)
    erased: int = 0
    #: null values (tombstones of compacted topics, e.g. an erased customer's snapshot):
    #: skipped and committed, never dead-lettered
    tombstones: int = 0
    blocklist_size: int = 0
    blocklist_refreshes: int = 0
    batches: int = 0
    retries: int = 0
    commits: int = 0
    paused_seconds: float = 0.0
    by_table: dict[str, int] = field(default_factory=dict)


class Fence:
    """Offsets already in ClickHouse at or after this sink's position, per partition.

    Stored as sorted disjoint ``[first, last]`` ranges: inserted blocks are almost always
    contiguous runs of offsets, so even a fence over a long history stays small.
    """

    def __init__(self) -> None:
        self._starts: dict[TopicKey, list[int]] = {}
        self._ends: dict[TopicKey, list[int]] = {}

    def clear(self, key: TopicKey) -> None:
        self._starts.pop(key, None)
        self._ends.pop(key, None)

    def add(self, key: TopicKey, ranges: Iterable[tuple[int, int]]) -> None:
        merged: list[list[int]] = []
        existing = zip(self._starts.get(key, ()), self._ends.get(key, ()), strict=True)
        for first, last in sorted([*existing, *ranges]):
            if merged and first <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], last)
            else:
                merged.append([first, last])
        if merged:
            self._starts[key] = [r[0] for r in merged]
            self._ends[key] = [r[1] for r in merged]

    def __contains__(self, item: tuple[str, int, int]) -> bool:
        topic, partition, offset = item
        starts = self._starts.get((topic, partition))
        if not starts:
            return False
        i = bisect_right(starts, offset) - 1
        return i >= 0 and offset <= self._ends[(topic, partition)][i]

    def forget_below(self, key: TopicKey, offset: int) -> None:
        """Drop ranges wholly before ``offset`` (committed: they cannot come back)."""
        starts, ends = self._starts.get(key), self._ends.get(key)
        if not starts or not ends:
            return
        keep = [i for i, end in enumerate(ends) if end >= offset]
        self._starts[key] = [starts[i] for i in keep]
        self._ends[key] = [ends[i] for i in keep]

    def keys(self) -> set[TopicKey]:
        """Partitions with at least one fenced range."""
        return {key for key, starts in self._starts.items() if starts}

    def ranges(self, key: TopicKey) -> list[tuple[int, int]]:
        return list(zip(self._starts.get(key, ()), self._ends.get(key, ()), strict=True))


def load_fence(
    backend: ClickHouseBackend, positions: dict[TopicKey, int]
) -> dict[TopicKey, list[tuple[int, int]]]:
    """Ranges of offsets ``>= positions[key]`` that ``sink_offsets`` says already landed."""
    ranges: dict[TopicKey, list[tuple[int, int]]] = {key: [] for key in positions}
    if not positions:
        return ranges
    conditions = " OR ".join(
        f"(topic = %(t{i})s AND kafka_partition = {int(p)} AND last_offset >= {int(o)})"
        for i, ((_, p), o) in enumerate(positions.items())
    )
    params = {f"t{i}": topic for i, (topic, _) in enumerate(positions)}
    rows = backend.query(
        "SELECT topic, kafka_partition, first_offset, last_offset, "
        "if(rows = last_offset - first_offset + 1, emptyArrayUInt64(), offsets) "
        f"FROM {backend.database}.sink_offsets WHERE {conditions}",
        params,
    )
    for topic, partition, first, last, offsets in rows:
        key = (str(topic), int(partition))
        if offsets:  # a block with gaps (dead letters in between): its exact offsets
            ranges[key].extend((int(o), int(o)) for o in offsets)
        else:
            ranges[key].append((int(first), int(last)))
    return {key: sorted(found) for key, found in ranges.items()}


def insert_bisecting(
    backend: ClickHouseBackend, batch: TableBatch
) -> list[tuple[Origin, ClickHouseRejectedError]]:
    """Insert ``batch``; rows ClickHouse rejects are isolated by halving and returned.

    :class:`ClickHouseUnavailableError` propagates: the caller retries (after re-fencing, since
    halves inserted before the failure are in).
    """
    if not len(batch):
        return []
    try:
        backend.insert(batch.table, batch.columns, batch.data)
        return []
    except ClickHouseRejectedError as exc:
        if len(batch) == 1:
            return [(batch.origins[0], exc)]
        middle = len(batch) // 2
        rejected = insert_bisecting(backend, batch.subset(range(middle)))
        return rejected + insert_bisecting(backend, batch.subset(range(middle, len(batch))))


def _good_messages(
    messages: Sequence[Message], on_error: Callable[[Message], bool]
) -> list[Message]:
    good = [m for m in messages if m.error() is None]
    if len(good) != len(messages):
        for m in messages:
            if m.error() is not None:
                on_error(m)
    return good


def _key(message: Message) -> TopicKey:
    return (message.topic() or "", message.partition() or 0)


@dataclass
class _TopicFigures:
    rows: int = 0
    fenced: int = 0
    dead_letters: int = 0
    erased: int = 0
    occurred_min_ms: int | None = None
    occurred_sum_ms: int = 0
    timed: int = 0

    def saw_event(self, occurred_ms: int) -> None:
        self.timed += 1
        self.occurred_sum_ms += occurred_ms
        if self.occurred_min_ms is None or occurred_ms < self.occurred_min_ms:
            self.occurred_min_ms = occurred_ms


@dataclass
class _Batch:
    """One batch: its messages and, once built, its rows per table and its dead letters."""

    messages: list[Message] = field(default_factory=list)
    started: float = 0.0
    #: per partition: the lowest and highest offset of the batch (filled by ``_build``)
    bounds: dict[TopicKey, list[int]] = field(default_factory=dict)
    tables: dict[str, TableBatch] | None = None
    inserted: set[str] = field(default_factory=set)
    dead: list[DeadLetter] = field(default_factory=list)
    figures: dict[str, _TopicFigures] = field(default_factory=dict)
    #: version of the block list the rows were filtered with (-1: not built yet)
    blocklist_version: int = -1

    def __len__(self) -> int:
        return len(self.messages)

    def add(self, messages: Sequence[Message], *, since: float | None = None) -> None:
        """``since``: when the consume call that fetched ``messages`` began waiting."""
        if messages and not self.messages:
            self.started = time.monotonic() if since is None else since
        self.messages.extend(messages)

    def topic(self, name: str) -> _TopicFigures:
        figures = self.figures.get(name)
        if figures is None:
            figures = self.figures[name] = _TopicFigures()
        return figures

    def drop_partitions(self, revoked: set[TopicKey]) -> None:
        self.messages = [m for m in self.messages if _key(m) not in revoked]
        for key in revoked:
            self.bounds.pop(key, None)
        if self.tables is not None:
            for name, batch in self.tables.items():
                keep = [
                    i for i, o in enumerate(batch.origins) if (o.topic, o.partition) not in revoked
                ]
                self.tables[name] = batch.subset(keep)


@dataclass
class _Inflight:
    """A batch handed to the insert worker, and how its delivery went."""

    batch: _Batch
    done: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    #: the worker is backing off after a failure (ClickHouse or the dead-letter topic is down)
    retrying: bool = False
    #: give up (stop, or a rebalance took partitions away): the batch is left uncommitted
    abandon: bool = False
    attempts: int = 0
    insert_ms: float = 0.0
    #: an unexpected failure: the sink stops rather than commit past this batch
    error: BaseException | None = None
    #: an earlier batch was given up: this one is never committed (its rows are in ClickHouse
    #: and fenced, so the replay from the older committed offset skips them)
    no_commit: bool = False


class ClickHouseSink:
    """Consumes the event topics into ClickHouse; the module docstring states the guarantees.

    Threads: the caller of :meth:`run` consumes, decodes and builds the next batch while
    ``clickhouse.insert_connections`` worker threads, each with its own connection, insert the
    previous ones (so one batch's client-side packing overlaps the server's work on another,
    and both overlap consumption), deliver their dead letters and record their telemetry.
    Offsets are committed by the consuming thread, in batch order: a batch is committed only
    once it and every batch handed off before it were delivered, so a batch still retrying on
    one connection holds back the commits of later batches that landed on another (and a
    batch given up means no later batch of that run is committed). At most
    ``insert_connections`` batches are uncommitted in the workers and one is being built.
    """

    def __init__(
        self,
        settings: Settings,
        backend: ClickHouseBackend,
        *,
        topics: Sequence[str] | None = None,
        codec: AvroCodec | None = None,
        rows: RowBuilder | None = None,
        consumer_config: dict[str, Any] | None = None,
        blocklist_loader: Callable[[], BlockList] | None = None,
        backend_factory: Callable[[], ClickHouseBackend] | None = None,
    ) -> None:
        self.settings = settings
        self.ch = settings.clickhouse
        #: the first insert worker's connection (and the caller's before ``run``); a connection
        #: is never shared between threads: every further worker opens its own
        self._backend = backend
        self._local = threading.local()
        if backend_factory is None and backend.kind == "server":
            backend_factory = lambda: make_backend(settings)  # noqa: E731
        #: embedded chdb is one store per process: one insert connection
        self.insert_connections = self.ch.insert_connections if backend_factory else 1
        self._backend_factory = backend_factory
        self.codec = codec or AvroCodec(
            EmbeddedRegistry(), max_event_bytes=settings.max_event_bytes
        )
        self.rows = rows or RowBuilder(settings)
        self.dlq_topic = settings.topic(DLQ_TOPIC)
        self.topics = list(topics) if topics is not None else default_topics(settings, self.rows)
        self.stats = SinkStats()
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._consumer_config = consumer_config or {}
        self._lock = threading.Lock()  # guards the fence between the two threads
        self._fence = Fence()
        #: partitions whose fence is loaded since they were (re)assigned
        self._fenced: set[TopicKey] = set()
        self._assigned: set[TopicKey] = set()
        self._revoked: set[TopicKey] = set()
        #: offsets whose commit failed (e.g. NOT_COORDINATOR after a broker restart): committed
        #: with the next commit, or retried at ``_commit_retry_at`` when no batch comes
        self._commit_due: dict[TopicKey, int] = {}
        self._commit_retry_at = 0.0
        self._held: list[Message] = []
        self._building = _Batch()
        self._ready: _Batch | None = None
        #: batches handed to the workers and not yet committed, in hand-off order
        self._inflights: deque[_Inflight] = deque()
        #: a batch was given up since the last assignment (while stopping: hand off no more)
        self._given_up = False
        self._queue: queue.Queue[_Inflight | None] = queue.Queue()
        self._paused = False
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        #: one block-list refresh at a time (workers refresh from their own connections)
        self._refresh_lock = threading.Lock()
        #: one batch's dead letters at a time: its flush then serves all of its delivery reports
        self._dlq_lock = threading.Lock()
        #: (version, list): swapped as one value by the insert thread, read by the consumer's
        self._blocklist: tuple[int, BlockList] = (0, BlockList(settings))
        self._blocklist_loaded_at: float | None = None
        self._load_blocklist = blocklist_loader or self._default_blocklist_loader()

    @property
    def backend(self) -> ClickHouseBackend:
        """The connection of the calling insert worker (the first one outside the workers)."""
        mine: ClickHouseBackend | None = getattr(self._local, "backend", None)
        return mine if mine is not None else self._backend

    @property
    def buffered(self) -> int:
        """Messages the sink holds outside Kafka (bounded: ``insert_connections`` + 2 batches)."""
        ready = self._ready
        return (
            len(self._building)
            + len(self._held)
            + (len(ready) if ready is not None else 0)
            + sum(len(inflight.batch) for inflight in list(self._inflights))
        )

    @property
    def paused(self) -> bool:
        return self._paused

    # -- Kafka clients -------------------------------------------------------------------------

    def consumer_config(self) -> dict[str, Any]:
        static = {"group.instance.id": self.ch.sink_instance_id} if self.ch.sink_instance_id else {}
        return confluent_config(
            self.settings,
            **{
                "group.id": self.ch.sink_group_id,
                **static,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                # bounds what librdkafka prefetches while the sink is paused or slow
                "queued.max.messages.kbytes": 65536,
                "fetch.max.bytes": 32 * 1024 * 1024,
                "max.partition.fetch.bytes": 4 * 1024 * 1024,
                **self._consumer_config,
            },
        )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        with self._lock:
            for key in keys:
                self._fence.clear(key)
            self._fenced -= keys
        self._assigned |= keys
        self._revoked -= keys
        self._given_up = False  # positions restart from the committed offsets
        if self._paused:  # still in an outage: fetch nothing new for these either
            consumer.assign(partitions)
            consumer.pause(partitions)
        log.info("assigned %d partitions", len(keys))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        # the batches in the workers may hold rows of these partitions: let them finish (and
        # commit them while they are still ours) or, if stuck retrying, abandon them, before
        # the new owner reads the fence
        inflights = list(self._inflights)
        for inflight in inflights:
            if inflight.retrying:
                inflight.abandon = True
                inflight.wake.set()
        for inflight in inflights:
            inflight.done.wait()
        self._finish_delivered()
        if self._commit_due:  # while the partitions are still ours
            self._commit_offsets({})
        self._assigned -= keys
        self._revoked |= keys
        with self._lock:
            self._fenced -= keys
            for key in keys:
                self._fence.clear(key)
        log.info("revoked %d partitions", len(keys))

    # -- block list (right to erasure) ---------------------------------------------------------

    @property
    def blocklist(self) -> BlockList:
        return self._blocklist[1]

    def _default_blocklist_loader(self) -> Callable[[], BlockList]:
        if self.settings.erasure.blocklist_source == "redis":
            from cxstream.redis_connection import sync_redis

            store = RedisBlockListStore(sync_redis(self.settings), self.settings)

            def from_redis() -> BlockList:
                try:
                    return store.load()
                except Exception as exc:  # redis-py's own hierarchy
                    raise ServiceError(f"block list in Redis ({store.key}): {exc}") from exc

            return from_redis
        # the insert connection: only ever called from the thread that owns it
        return lambda: ErasureLedger(self.backend, self.settings).block_list()

    def refresh_blocklist(self, *, force: bool = False) -> bool:
        """Reload the block list if it is due (or ``force``); True if it changed.

        Called by the insert thread (or before it starts): the ClickHouse source uses its
        connection. Raises :class:`ServiceError` when the source cannot be read.
        """
        with self._refresh_lock:
            return self._refresh_blocklist(force)

    def _refresh_blocklist(self, force: bool) -> bool:
        now = time.monotonic()
        loaded_at = self._blocklist_loaded_at
        if (
            not force
            and loaded_at is not None
            and now - loaded_at < self.settings.erasure.blocklist_refresh_seconds
        ):
            return False
        fresh = self._load_blocklist()
        self._blocklist_loaded_at = now
        self.stats.blocklist_refreshes += 1
        version, current = self._blocklist
        if _marks(fresh) == _marks(current):
            return False
        self._blocklist = (version + 1, fresh)
        self.stats.blocklist_size = len(fresh)
        log.info("block list: %d erased customers (version %d)", len(fresh), version + 1)
        return True

    def _refresh_or_wait(self) -> None:
        """Refresh if due; an unreadable list holds the batch back like an outage."""
        try:
            self.refresh_blocklist()
        except ServiceError as exc:
            raise ClickHouseUnavailableError(
                f"block list not readable, the batch waits (it may hold erased customers): {exc}"
            ) from exc

    def _drop_erased_rows(self, batch: _Batch) -> None:
        """Filter a built batch again with a block list that changed since it was built."""
        version, blocklist = self._blocklist
        if batch.tables is None or batch.blocklist_version == version:
            return
        batch.blocklist_version = version
        if not len(blocklist):
            return
        for name, table in list(batch.tables.items()):
            ids = [c for c in (*CLEAR_ID_COLUMNS, *PSEUDONYM_COLUMNS) if c in table.columns]
            if name in batch.inserted or not ids or "occurred_at_ms" not in table.columns:
                continue
            dropped = _erased_indices(
                blocklist, table.column("occurred_at_ms"), {c: table.column(c) for c in ids}
            )
            if not dropped:
                continue
            topics = table.column("kafka_topic")
            for i in dropped:
                figures = batch.topic(topics[i])
                figures.erased += 1
                figures.rows -= 1
            with self._lock:
                self.stats.erased += len(dropped)
            gone = set(dropped)
            batch.tables[name] = table.subset(i for i in range(len(table)) if i not in gone)

    # -- main loop -----------------------------------------------------------------------------

    def run(self, stop_event: threading.Event) -> SinkStats:
        """Consume until ``stop_event`` is set; the batches in hand are delivered first."""
        # before anything is consumed: a sink that does not know who is erased must not insert
        self.refresh_blocklist(force=True)
        consumer = self._consumer = Consumer(self.consumer_config(), logger=log)
        self._producer = Producer(
            confluent_config(self.settings, **{"enable.idempotence": True, "acks": "all"}),
            logger=log,
        )
        workers = [
            threading.Thread(
                target=self._work, args=(i,), name=f"clickhouse-sink-insert-{i}", daemon=True
            )
            for i in range(self.insert_connections)
        ]
        for worker in workers:
            worker.start()
        consumer.subscribe(
            self.topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        max_rows, max_wait = self.ch.sink_batch_max_rows, self.ch.sink_batch_max_seconds
        try:
            while not stop_event.is_set():
                if self._inflights and self._inflights[0].done.is_set():
                    # commit delivered batches now, not when the next one is handed off:
                    # an idle stream must not leave its last batch uncommitted
                    self._finish_delivered()
                elif self._commit_due and time.monotonic() >= self._commit_retry_at:
                    self._commit_offsets({})
                if any(inflight.retrying for inflight in list(self._inflights)):
                    # ClickHouse is failing: fetch nothing more (paused) until what the
                    # workers hold is in; the batch being built waits in memory
                    self._await_inflight(stop_event, slots=0)
                    continue
                batch = self._building
                if self._held:
                    batch.add(self._held)
                    self._held = []
                # an empty batch's age counts from when this consume began waiting: consume
                # blocks until the timeout below 40k events/s, and starting the clock after it
                # made batches twice as old as sink_batch_max_seconds (bench sink: p99 2.1 s)
                opened = time.monotonic()
                left = max_wait if not batch else batch.started + max_wait - opened
                messages = consumer.consume(
                    num_messages=max(1, max_rows - len(batch)), timeout=max(0.0, left)
                )
                batch.add(_good_messages(messages, self._kafka_error), since=opened)
                self._drop_revoked(batch)
                if batch and (
                    len(batch) >= max_rows or time.monotonic() - batch.started >= max_wait
                ):
                    self._handoff(batch, stop_event)
            batch = self._building
            batch.add(self._held)
            self._held = []
            if batch:
                self._handoff(batch, stop_event)
            self._await_inflight(stop_event, slots=0)
            if self._commit_due:
                self._commit_offsets({})
        finally:
            for _ in workers:
                self._queue.put(None)
            for worker in workers:
                worker.join(self.ch.query_timeout_seconds + 10)
            self._building = _Batch()
            self._producer.flush(10)
            consumer.close()
        return self.stats

    def _kafka_error(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return False
        if error.fatal():
            raise ServiceError(f"Kafka consumer failed: {error}")
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("Kafka consumer: %s", error)
        return True

    def _drop_revoked(self, batch: _Batch) -> None:
        if self._revoked:
            batch.drop_partitions(self._revoked)
            self._revoked.clear()

    def _handoff(self, batch: _Batch, stop_event: threading.Event) -> None:
        """Build ``batch``, wait for a free worker (committing what was delivered), hand it
        over."""
        self.stats.consumed += len(batch)
        self._build(batch)
        self._ready, self._building = batch, _Batch()
        delivered = self._await_inflight(stop_event, slots=self.insert_connections - 1)
        self._drop_revoked(batch)  # a rebalance while waiting
        self._ready = None
        if (not delivered or self._given_up) and stop_event.is_set():
            # an earlier batch was given up: never commit a later one past it
            return
        if not batch:
            return
        inflight = _Inflight(batch)
        self._inflights.append(inflight)
        self._queue.put(inflight)

    def _await_inflight(self, stop_event: threading.Event, *, slots: int) -> bool:
        """Block until at most ``slots`` batches are uncommitted in the workers, committing
        the delivered ones in order; False if a batch was given up meanwhile.

        A normal insert finishes in well under a second, so this just waits. If it takes
        longer (ClickHouse unreachable or slow), consumption is paused and the consumer polled
        meanwhile, so the group keeps us and nothing more is fetched: that is the backpressure.
        """
        delivered = self._finish_delivered()
        paused_since: float | None = None
        while len(self._inflights) > slots:
            head = self._inflights[0]
            if not head.done.wait(0.05 if paused_since is None else 0.0):
                inflights = list(self._inflights)
                if stop_event.is_set():
                    for inflight in inflights:
                        if inflight.retrying:
                            inflight.abandon = True
                            inflight.wake.set()
                if paused_since is None and any(f.retrying or f.attempts > 1 for f in inflights):
                    paused_since = time.monotonic()
                    self._pause()
                if paused_since is not None:
                    self._poll_while_paused(0.2)
            delivered = self._finish_delivered() and delivered
        if paused_since is not None:
            self.stats.paused_seconds += time.monotonic() - paused_since
            self._resume()
        return delivered

    def _finish_delivered(self) -> bool:
        """Commit the delivered batches at the head of the line, in order (consuming thread);
        False if one of them was given up (then no batch handed off before now is committed).
        """
        given_up = False
        inflights = self._inflights
        while inflights and inflights[0].done.is_set():
            inflight = inflights.popleft()
            if inflight.error is not None:
                for later in inflights:
                    later.no_commit = True
                raise ServiceError(
                    f"the ClickHouse sink stopped on an unexpected error (batch left "
                    f"uncommitted, it will be replayed): {inflight.error!r}"
                ) from inflight.error
            if inflight.ok and not inflight.no_commit:
                self._commit(inflight.batch)
                self.stats.batches += 1
                continue
            given_up = self._given_up = True
            # committing a later batch would move the offsets past this one's rows
            for later in inflights:
                later.no_commit = True
        return not given_up

    def _poll_while_paused(self, seconds: float) -> None:
        consumer = self._consumer
        if consumer is None:
            time.sleep(seconds)
            return
        message = consumer.poll(seconds)
        if message is not None and not self._kafka_error(message):
            # fetched just before the pause took effect: the position is past it, keep it
            self._held.append(message)

    # -- the insert worker ---------------------------------------------------------------------

    def _work(self, index: int = 0) -> None:
        """One insert worker with its own connection (the first uses the sink's backend)."""
        own: ClickHouseBackend | None = None
        if index:
            assert self._backend_factory is not None
            own = self._local.backend = self._backend_factory()
        try:
            self._work_loop()
        finally:
            if own is not None:
                own.close()

    def _work_loop(self) -> None:
        refresh = self.settings.erasure.blocklist_refresh_seconds
        while True:
            try:
                inflight = self._queue.get(timeout=refresh)
            except queue.Empty:
                # idle: keep the list fresh anyway, so the next batch's insert does not wait
                try:
                    self.refresh_blocklist()
                except ServiceError as exc:
                    log.warning("block list not refreshed (retried before an insert): %s", exc)
                continue
            if inflight is None:
                return
            try:
                self._deliver(inflight)
            except Exception as exc:  # reported to the consuming thread, which stops
                log.exception("ClickHouse sink worker failed on a batch")
                inflight.error = exc
            finally:
                inflight.done.set()

    def _deliver(self, inflight: _Inflight) -> None:
        """Insert and dead-letter one batch, retrying with backoff until it is in (or given up)."""
        batch = inflight.batch
        delay = self.ch.sink_retry_initial_seconds
        while True:
            inflight.attempts += 1
            try:
                started = time.monotonic()
                self._process(batch, retry=inflight.attempts > 1)
                inflight.insert_ms = (time.monotonic() - started) * 1000
                self._send_dead_letters(batch)
                inflight.ok = True
                inflight.retrying = False
                self._record(batch, inflight.attempts, inflight.insert_ms)
                return
            except ClickHouseUnavailableError as exc:
                if inflight.abandon:
                    log.warning("batch abandoned unacknowledged (%s); it will be replayed", exc)
                    return
                inflight.retrying = True
                with self._lock:
                    self.stats.retries += 1
                log.warning(
                    "ClickHouse unavailable (attempt %d, next in %.1f s): %s",
                    inflight.attempts,
                    delay,
                    exc,
                )
                inflight.wake.wait(delay)
                if inflight.abandon:
                    log.warning("batch abandoned unacknowledged; it will be replayed")
                    return
                delay = min(delay * 2, self.ch.sink_retry_max_seconds)

    # -- one batch -----------------------------------------------------------------------------

    def process(self, messages: Sequence[Message]) -> list[DeadLetter]:
        """The ClickHouse half of one batch, in this thread and without Kafka.

        Decodes, fences, inserts; returns the dead letters the caller must deliver before
        committing. Raises :class:`ClickHouseUnavailableError` when ClickHouse cannot take the
        batch (call again with the same messages: what landed meanwhile is fenced).
        """
        batch = _Batch()
        batch.add(list(messages))
        self.stats.consumed += len(batch)
        self._refresh_or_wait()
        self._build(batch)
        # always ask ClickHouse what landed: the caller may be retrying a failed call
        self._process(batch, retry=True)
        return batch.dead

    def _process(self, batch: _Batch, *, retry: bool) -> None:
        """Fence then insert (worker thread): rows that already landed are skipped."""
        self._refresh_or_wait()
        self._drop_erased_rows(batch)
        newly_fenced = self._ensure_fence(batch)
        if retry or newly_fenced:
            self._skip_landed(batch, reload=retry)
        self._insert(batch)

    def _build(self, batch: _Batch) -> None:
        """Decode the batch and build its columns per table (dead letters for what fails)."""
        tables: dict[str, TableBatch] = {}
        ingest_time = int(time.time())
        messages = batch.messages
        # consumed messages always have all three (the stubs say Optional)
        topics: list[str] = list(map(Message.topic, messages))  # type: ignore[arg-type]
        partitions: list[int] = list(map(Message.partition, messages))  # type: ignore[arg-type]
        offsets: list[int] = list(map(Message.offset, messages))  # type: ignore[arg-type]
        bounds = batch.bounds
        for key, offset in zip(zip(topics, partitions, strict=True), offsets, strict=True):
            bound = bounds.get(key)
            if bound is None:
                bounds[key] = [offset, offset]
            elif offset > bound[1]:
                bound[1] = offset
            elif offset < bound[0]:
                bound[0] = offset
        grouped = self._decode_all(messages, topics, partitions, offsets)
        if grouped is None:
            grouped = self._decode_each(batch, tables, ingest_time, topics, partitions, offsets)
        batch.blocklist_version, blocklist = self._blocklist
        if len(blocklist):
            self._drop_erased_records(batch, grouped, blocklist)
        for name, (fields, topics, partitions, offsets, schema_ids) in grouped.items():
            table, unstorable = self.rows.build_fields(
                name, fields, topics, partitions, offsets, schema_ids, ingest_time
            )
            for index, error in unstorable:
                message = _message(batch, Origin(topics[index], partitions[index], offsets[index]))
                batch.dead.append(self._letter(message, error, "unstorable"))
                batch.topic(topics[index]).dead_letters += 1
            tables[name] = table
            self._count_rows(batch, table)
        batch.tables = tables

    def _decode_all(
        self,
        messages: list[Message],
        topics: list[str],
        partitions: list[int],
        offsets: list[int],
    ) -> _Grouped | None:
        """The common batch, whole lists at a time: every message an event of a type with a
        table, read straight into field columns (:meth:`AvroCodec.columns_plan`: no dict per
        message). ``None`` when it is not (a tombstone, bad bytes, dead letters): then
        :meth:`_decode_each` takes it message by message and words the errors."""
        if not messages or self.dlq_topic in set(topics):
            return None
        values = list(map(Message.value, messages))
        if None in values or max(map(len, values)) > self.codec.max_event_bytes:  # type: ignore[arg-type]
            return None
        headers = [v[:HEADER_SIZE] for v in values]  # type: ignore[index]
        first = headers[0]
        where: dict[bytes, list[int]] = {}
        if headers.count(first) == len(headers):  # one topic, or several of one writer schema
            where[first] = list(range(len(headers)))
        else:
            for i, header in enumerate(headers):
                where.setdefault(header, []).append(i)
        by_name: dict[str, list[tuple[ColumnsPlan, list[int]]]] = {}
        for header, index in where.items():
            try:
                plan = self.codec.columns_plan(header)
            except DecodeError:
                return None
            if plan.name not in self.rows.tables:
                return None
            by_name.setdefault(plan.name, []).append((plan, index))
        whole = len(where) == 1
        grouped: _Grouped = {}
        for name, parts in by_name.items():
            try:
                read = [
                    plan.read(values if whole else [values[i] for i in index])  # type: ignore[arg-type,misc]
                    for plan, index in parts
                ]
            except Exception:  # a body the compiled reader rejects: worded message by message
                return None
            # every writer version of a type reads as the newest: one field order per type
            names = parts[0][0].fields
            picked = [i for _, index in parts for i in index]
            schema_ids = [plan.schema_id for plan, index in parts for _ in index]
            columns = read[0]
            if len(parts) > 1:  # writer versions of one type mixed: joined, in message order
                order = sorted(range(len(picked)), key=picked.__getitem__)
                joined = [[v for part in read for v in part[f]] for f in range(len(names))]
                columns = [[column[k] for k in order] for column in joined]
                picked = [picked[k] for k in order]
                schema_ids = [schema_ids[k] for k in order]
            fields = dict(zip(names, columns, strict=True))
            if whole:
                grouped[name] = (fields, topics, partitions, offsets, schema_ids)
            else:
                grouped[name] = (
                    fields,
                    [topics[i] for i in picked],
                    [partitions[i] for i in picked],
                    [offsets[i] for i in picked],
                    schema_ids,
                )
        return grouped

    def _decode_each(
        self,
        batch: _Batch,
        tables: dict[str, TableBatch],
        ingest_time: int,
        topics: list[str],
        partitions: list[int],
        offsets: list[int],
    ) -> _Grouped:
        """Message by message: dead-letter rows, tombstones and what does not decode."""
        decode, known, dlq_topic = self.codec.decode, self.rows.tables, self.dlq_topic
        records: dict[str, tuple[list[Any], list[str], list[int], list[int], list[int]]] = {}
        tombstones = 0
        for message, topic, partition, offset in zip(
            batch.messages, topics, partitions, offsets, strict=True
        ):
            if topic == dlq_topic:  # its headers are the row: a null value is fine there
                self._dead_letter_row(tables, message, ingest_time)
                batch.topic(topic).rows += 1
                continue
            value = message.value()
            if value is None:
                # a tombstone: compaction's delete marker, not an event (nothing to store)
                tombstones += 1
                continue
            try:
                event = decode(value)
                if event.name not in known:
                    raise DecodeError(f"event type {event.name!r} has no table", reason="no_table")
            except DecodeError as exc:
                batch.dead.append(self._letter(message, exc, exc.reason))
                batch.topic(topic).dead_letters += 1
                continue
            group = records.get(event.name)
            if group is None:
                group = records[event.name] = ([], [], [], [], [])
            group[0].append(event.record)
            group[1].append(topic)
            group[2].append(partition)
            group[3].append(offset)
            group[4].append(event.schema_id)
        self.stats.tombstones += tombstones
        return {
            name: (fields_from_records(group[0], self.rows.sources[name]), *group[1:])
            for name, group in records.items()
        }

    def _drop_erased_records(self, batch: _Batch, grouped: _Grouped, blocklist: BlockList) -> None:
        """Drop events of erased customers from before their erasure (a replay): never stored."""
        erased = 0
        for name, group in list(grouped.items()):
            fields = group[0]
            count = len(group[1])
            ids = {n: fields[n] for n in (*CLEAR_ID_COLUMNS, *PSEUDONYM_COLUMNS) if n in fields}
            dropped = _erased_indices(blocklist, fields.get("occurred_at") or [None] * count, ids)
            if not dropped:
                continue
            for i in dropped:
                batch.topic(group[1][i]).erased += 1
            erased += len(dropped)
            gone = set(dropped)
            keep = [i for i in range(count) if i not in gone]
            grouped[name] = (
                take(fields, keep),
                [group[1][i] for i in keep],
                [group[2][i] for i in keep],
                [group[3][i] for i in keep],
                [group[4][i] for i in keep],
            )
        self.stats.erased += erased

    def _count_rows(self, batch: _Batch, table: TableBatch) -> None:
        """Rows and ``occurred_at`` figures per source topic (one topic per table, usually)."""
        if not len(table):
            return
        occurred = table.column("occurred_at_ms")
        topics = table.column("kafka_topic")
        if topics[0] == topics[-1] and len(set(topics)) == 1:
            figures = batch.topic(topics[0])
            figures.rows += len(table)
            figures.timed += len(occurred)
            figures.occurred_sum_ms += sum(occurred)
            low = min(occurred)
            if figures.occurred_min_ms is None or low < figures.occurred_min_ms:
                figures.occurred_min_ms = low
            return
        for topic, occurred_ms in zip(topics, occurred, strict=True):
            figures = batch.topic(topic)
            figures.rows += 1
            figures.saw_event(occurred_ms)

    def _dead_letter_row(
        self, tables: dict[str, TableBatch], message: Message, ingest_time: int
    ) -> None:
        source = SourceMessage.from_confluent(message)
        origin = Origin(source.topic, source.partition, source.offset)
        values = dead_letter_row(
            source.headers,
            source.timestamp_ms,
            len(source.value or b""),
            origin,
            ingest_time,
            keep_message=self.settings.privacy.store_pii_in_clear,
        )
        table = tables.get(DEAD_LETTER_TABLE)
        if table is None:
            table = tables[DEAD_LETTER_TABLE] = TableBatch(DEAD_LETTER_TABLE, DEAD_LETTER_COLUMNS)
        table.append(values)

    def _insert(self, batch: _Batch) -> None:
        assert batch.tables is not None
        for name, table in batch.tables.items():
            if name in batch.inserted:
                continue
            rejected = insert_bisecting(self.backend, table)
            for origin, error in rejected:
                if origin.topic == self.dlq_topic:  # never dead-letter a dead letter (loop)
                    log.error("dead letter %s:%d@%d not stored: %s", *_coords(origin), error)
                    continue
                batch.dead.append(
                    self._letter(_message(batch, origin), error, "clickhouse_rejected")
                )
                batch.topic(origin.topic).dead_letters += 1
                batch.topic(origin.topic).rows -= 1
            # a retry after a later table failed must not insert this one again
            batch.inserted.add(name)
            landed = len(table) - len(rejected)
            with self._lock:  # several insert workers count into the same stats
                self.stats.inserted += landed
                self.stats.by_table[name] = self.stats.by_table.get(name, 0) + landed

    def _ensure_fence(self, batch: _Batch) -> bool:
        """Load the fence of partitions first seen since their assignment; True if the batch
        has partitions with fenced offsets (so rows may have to be skipped)."""
        keys = set(batch.bounds)
        with self._lock:
            positions = {k: b[0] for k, b in batch.bounds.items() if k not in self._fenced}
        loaded = load_fence(self.backend, positions)
        with self._lock:
            for key, ranges in loaded.items():
                self._fence.add(key, ranges)
                self._fenced.add(key)
            return bool(keys & self._fence.keys())

    def _skip_landed(self, batch: _Batch, *, reload: bool) -> None:
        """Drop rows whose offsets already landed; with ``reload``, ask ClickHouse again first
        (before a retry: a failed attempt may have landed after all)."""
        assert batch.tables is not None
        pending = {n: t for n, t in batch.tables.items() if n not in batch.inserted}
        if reload:
            positions: dict[TopicKey, int] = {}
            for table in pending.values():
                for origin in table.origins:
                    key = (origin.topic, origin.partition)
                    positions[key] = min(origin.offset, positions.get(key, origin.offset))
            loaded = load_fence(self.backend, positions)
            with self._lock:
                for key, ranges in loaded.items():
                    self._fence.add(key, ranges)
        with self._lock:
            fence = self._fence
            for name, table in pending.items():
                keep = [
                    i
                    for i, o in enumerate(table.origins)
                    if (o.topic, o.partition, o.offset) not in fence
                ]
                if len(keep) == len(table):
                    continue
                for i in set(range(len(table))) - set(keep):
                    figures = batch.topic(table.origins[i].topic)
                    figures.fenced += 1
                    figures.rows -= 1
                self.stats.fenced += len(table) - len(keep)
                batch.tables[name] = table.subset(keep)

    # -- dead letters --------------------------------------------------------------------------

    def _letter(self, message: Message, error: Exception, reason: str) -> DeadLetter:
        letter = build_dead_letter(
            self.dlq_topic, SourceMessage.from_confluent(message), error, step=STEP
        )
        headers = [(k, reason.encode() if k == H_ERROR_REASON else v) for k, v in letter.headers]
        return replace(letter, headers=headers, reason=reason)

    def _send_dead_letters(self, batch: _Batch) -> None:
        if not batch.dead:
            return
        producer = self._producer
        if producer is None:
            raise ServiceError("the sink's dead-letter producer is not running")
        with self._dlq_lock:
            self._produce_dead_letters(producer, batch)

    def _produce_dead_letters(self, producer: Producer, batch: _Batch) -> None:
        errors: list[str] = []

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                errors.append(str(error))

        for letter in batch.dead:
            producer.produce(
                letter.topic,
                value=letter.value,
                key=letter.key,
                headers=list(letter.headers),
                on_delivery=on_delivery,
            )
            producer.poll(0)
        remaining = producer.flush(30)
        if remaining or errors:
            # not acknowledged: retried like an outage (inserted tables are not inserted again)
            raise ClickHouseUnavailableError(
                f"dead-letter topic {self.dlq_topic}: {remaining} undelivered, errors: {errors[:3]}"
            )
        with self._lock:
            self.stats.dead_letters += len(batch.dead)
        batch.dead = []

    # -- offsets, backpressure -----------------------------------------------------------------

    def _commit(self, batch: _Batch) -> None:
        self._commit_offsets({key: bound[1] + 1 for key, bound in batch.bounds.items()})

    def _commit_offsets(self, offsets_by_key: dict[TopicKey, int]) -> None:
        """Commit ``offsets_by_key`` plus those whose commit failed before (never backwards)."""
        consumer = self._consumer
        if consumer is None:
            return
        wanted = dict(self._commit_due)
        for key, offset in offsets_by_key.items():
            wanted[key] = max(wanted.get(key, offset), offset)
        self._commit_due = {}
        offsets = [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in wanted.items()
            if (topic, partition) in self._assigned
        ]
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
            self.stats.commits += 1
        except KafkaException as exc:  # the rows are in ClickHouse and fenced for a replay
            # kept and retried: else an idle partition's group lag never reaches 0 (and a
            # restart re-reads what is already stored) -- found by the fault suite
            self._commit_due = {(tp.topic, tp.partition): tp.offset for tp in offsets}
            self._commit_retry_at = time.monotonic() + 1.0
            log.warning("offset commit failed (rows are stored and fenced; retried): %s", exc)
        with self._lock:
            for tp in offsets:
                self._fence.forget_below((tp.topic, tp.partition), tp.offset)

    def _pause(self) -> None:
        consumer = self._consumer
        if consumer is not None and (assignment := consumer.assignment()):
            consumer.pause(assignment)
        self._paused = True
        log.warning("consumption paused until ClickHouse takes the batch in hand")

    def _resume(self) -> None:
        consumer = self._consumer
        if consumer is not None and (assignment := consumer.assignment()):
            consumer.resume(assignment)
        self._paused = False
        log.info("ClickHouse took the batch; consumption resumed")

    # -- telemetry -----------------------------------------------------------------------------

    def _record(self, batch: _Batch, attempts: int, insert_ms: float) -> None:
        now_ms = int(time.time() * 1000)
        batch_ms = int((time.monotonic() - batch.started) * 1000)
        data: list[list[Any]] = [[] for _ in _BATCH_COLUMNS]
        for topic, f in sorted(batch.figures.items()):
            delay_max = max(0, now_ms - f.occurred_min_ms) if f.occurred_min_ms is not None else 0
            delay_sum = max(0, f.timed * now_ms - f.occurred_sum_ms)
            values = (
                now_ms // 1000, now_ms, self.ch.sink_group_id, self.worker, topic, max(f.rows, 0),
                f.fenced, f.dead_letters, attempts, int(insert_ms), batch_ms, delay_max, delay_sum,
            )  # fmt: skip
            for column, value in zip(data, values, strict=True):
                column.append(value)
        if not data[0]:
            return
        try:
            self.backend.insert("sink_batches", _BATCH_COLUMNS, data)
        except ClickHouseError as exc:  # telemetry only: never hold the data up for it
            log.warning("could not record batch telemetry: %s", exc)


def _erased_indices(
    blocklist: BlockList, occurred_ms: Sequence[Any], ids: Mapping[str, Sequence[Any]]
) -> list[int]:
    """Indices of the rows :meth:`BlockList.drops` refuses, read from columns: their
    ``occurred_at`` (ms) and the identifier columns they have."""
    names, columns = list(ids), list(ids.values())
    return [
        i
        for i, occurred in enumerate(occurred_ms)
        if blocklist.drops(
            {"occurred_at": occurred, **{n: c[i] for n, c in zip(names, columns, strict=True)}}
        )
    ]


def _marks(blocklist: BlockList) -> dict[str, int]:
    return {mark.pseudonym: mark.erased_at_ms for mark in blocklist}


def _coords(origin: Origin) -> tuple[str, int, int]:
    return origin.topic, origin.partition, origin.offset


def _message(batch: _Batch, origin: Origin) -> Message:
    for message in batch.messages:
        if (message.topic(), message.partition(), message.offset()) == _coords(origin):
            return message
    raise KeyError(f"no message {origin} in the batch")


def default_topics(settings: Settings, rows: RowBuilder) -> list[str]:
    """Every event topic with a table, plus the dead-letter topic (for the pipeline board)."""
    return [settings.topic(name) for name in sorted(rows.tables)] + [settings.topic(DLQ_TOPIC)]


def run_sink(
    settings: Settings,
    stop_event: threading.Event,
    *,
    on_ready: Callable[[ClickHouseSink], None] | None = None,
) -> SinkStats:
    """Migrate, then run the sink until ``stop_event`` is set (the ``cxstream sink`` command)."""
    backend = make_backend(settings)
    try:
        report = migrate(backend)
        if report.changed:
            log.info(
                "migrations: applied %s, columns added %s", report.applied, report.columns_added
            )
        sink = ClickHouseSink(settings, backend)
        if on_ready is not None:
            on_ready(sink)
        with tuned_garbage_collector(settings.worker.gc_thresholds):
            return sink.run(stop_event)
    finally:
        backend.close()
