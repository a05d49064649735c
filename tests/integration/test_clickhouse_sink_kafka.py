"""The consuming sink end to end: real Kafka, real ClickHouse (server and chdb).

Each test gets its own topic prefix, consumer group and database, so runs never collide.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from cxstream.settings import Settings
from sinks.clickhouse.backend import ClickHouseBackend, make_backend
from sinks.clickhouse.migrations import migrate
from sinks.clickhouse.sink import ClickHouseSink, SinkStats
from sinks.clickhouse.testing import sample_events, shared_chdb_path
from streams.codec import AvroCodec
from streams.dlq import (
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_ERROR_REASON,
    H_SOURCE_OFFSET,
    H_SOURCE_TOPIC,
    header_map,
)
from streams.kafka_config import confluent_config
from streams.producer import EventProducer
from streams.registry import EmbeddedRegistry
from streams.topics import delete_topics, ensure_topics, platform_topics
from tests.support.services import LocalStack, free_port
from tests.unit.test_clickhouse_contract import kpi_events, measured_kpis

pytestmark = pytest.mark.integration

Events = list[tuple[str, dict[str, Any]]]


@pytest.fixture(params=["server", "chdb"])
def env(request: pytest.FixtureRequest, local_stack: LocalStack) -> Iterator[Settings]:
    """Settings with a private topic prefix, consumer group and database; all removed after."""
    name = f"t{uuid.uuid4().hex[:10]}"
    clickhouse: dict[str, Any] = {
        "database": name,
        "sink_group_id": f"{name}-sink",
        "sink_batch_max_seconds": 0.3,
        "sink_retry_initial_seconds": 0.1,
        "sink_retry_max_seconds": 1.0,
    }
    if request.param == "chdb":
        clickhouse.update(host=None, chdb_path=shared_chdb_path())
    settings = local_stack.settings.model_copy(
        update={
            "kafka": local_stack.settings.kafka.model_copy(
                update={"topic_prefix": name, "partitions": 2}
            ),
            "clickhouse": local_stack.settings.clickhouse.model_copy(update=clickhouse),
        }
    )
    specs = platform_topics(settings)
    ensure_topics(settings, specs)
    try:
        yield settings
    finally:
        delete_topics(settings, [s.name for s in specs])
        drop_group(settings)
        backend = make_backend(settings)
        backend.execute(f"DROP DATABASE IF EXISTS {name}")
        backend.close()


def drop_group(settings: Settings) -> None:
    admin = AdminClient(confluent_config(settings))
    for future in admin.delete_consumer_groups([settings.clickhouse.sink_group_id]).values():
        with contextlib.suppress(KafkaException):  # no offsets committed: no group
            future.result(timeout=30)


def produce(settings: Settings, events: Events) -> None:
    with EventProducer(settings, AvroCodec(EmbeddedRegistry())) as producer:
        for name, record in events:
            producer.produce(name, record, key=record["event_id"])
        producer.flush()


def produce_raw(settings: Settings, topic: str, values: Sequence[bytes]) -> None:
    producer = Producer(confluent_config(settings))
    for value in values:
        producer.produce(settings.topic(topic), value=value)
    assert producer.flush(30) == 0


class Running:
    """A sink running in a thread until stopped, with a backend (connection) of its own."""

    def __init__(self, settings: Settings, backend: Any = None, **sink_options: Any) -> None:
        self.backend = make_backend(settings) if backend is None else backend
        self.sink = ClickHouseSink(settings, self.backend, **sink_options)
        self.stop = threading.Event()
        self.result: SinkStats | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self.sink.run(self.stop)
        except BaseException as exc:  # surfaced by wait()/close()
            self.error = exc

    def wait(self, predicate: Callable[[SinkStats], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.sink.stats):
            assert self.error is None, f"sink failed: {self.error!r}"
            assert time.monotonic() < deadline, f"sink did not get there: {self.sink.stats}"
            time.sleep(0.1)

    def close(self) -> SinkStats:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "sink did not stop"
        self.backend.close()
        assert self.error is None, f"sink failed: {self.error!r}"
        assert self.result is not None
        return self.result


def read_dlq(settings: Settings, expected: int, timeout: float = 30.0) -> list[dict[str, str]]:
    consumer = Consumer(
        confluent_config(
            settings,
            **{
                "group.id": f"dlq-reader-{uuid.uuid4().hex[:6]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,  # commits nothing, so the group leaves no trace
            },
        )
    )
    consumer.subscribe([settings.topic("dlq")])
    found: list[dict[str, str]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                found.append(header_map(message.headers()))
    finally:
        consumer.close()
    return found


def count(backend: ClickHouseBackend, table: str, final: bool = False) -> int:
    rows = backend.query(
        f"SELECT count() FROM {backend.database}.{table}{' FINAL' if final else ''}"
    )
    return int(rows[0][0])


def event_ids(backend: ClickHouseBackend, names: set[str]) -> list[str]:
    ids: list[str] = []
    for name in sorted(names):
        ids.extend(
            str(r[0]) for r in backend.query(f"SELECT event_id FROM {backend.database}.{name}")
        )
    return ids


def rewind_group(settings: Settings) -> None:
    """Set the sink group's committed offsets back to 0: the state a crash before commit leaves."""
    admin = AdminClient(confluent_config(settings))
    topics = [spec.name for spec in platform_topics(settings)]
    partitions = [TopicPartition(t, p, 0) for t in topics for p in range(settings.kafka.partitions)]
    group = settings.clickhouse.sink_group_id
    futures = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, partitions)])
    for future in futures.values():
        future.result(timeout=30)


def test_every_event_lands_once_and_bad_bytes_reach_the_dlq(env: Settings) -> None:
    events = sample_events(3000, seed=31)
    produce(env, events)
    produce_raw(env, "transaction", [b"", b"\x00\x00\x00\x00\x01garbage", b"\x07bad-magic"])
    backend = make_backend(env)
    migrate(backend)
    running = Running(env)
    try:
        running.wait(lambda s: s.consumed >= len(events) + 3)
        # the sink reads its own dead letters back into dead_letter (pipeline board)
        running.wait(lambda s: count(backend, "dead_letter") >= 3)
    finally:
        stats = running.close()
    names = {n for n, _ in events}
    ids = event_ids(backend, names)
    assert sorted(ids) == sorted(r["event_id"] for _, r in events)  # all, and none twice
    assert stats.dead_letters == 3
    assert stats.fenced == 0
    letters = read_dlq(env, 3)
    assert sorted(h[H_ERROR_REASON] for h in letters) == ["bad_body", "bad_magic", "truncated"]
    assert {h[H_SOURCE_TOPIC] for h in letters} == {env.topic("transaction")}
    assert all(h[H_ERROR_CLASS] == "DecodeError" for h in letters)
    reasons = backend.query(
        f"SELECT reason, source_topic, message FROM {backend.database}.dead_letter ORDER BY reason"
    )
    assert reasons == [
        (r, env.topic("transaction"), None) for r in ("bad_body", "bad_magic", "truncated")
    ]
    per_topic = backend.query(
        f"SELECT target, sum(rows) FROM {backend.database}.sink_batches "
        "WHERE target != %(dlq)s GROUP BY target",
        {"dlq": env.topic("dlq")},
    )
    produced = {env.topic(n): sum(1 for m, _ in events if m == n) for n in names}
    assert dict(per_topic) == produced


def test_a_replay_after_a_lost_commit_inserts_nothing_twice(env: Settings) -> None:
    events, expected = kpi_events(seed=32)
    produce(env, events)
    backend = make_backend(env)
    migrate(backend)
    first = Running(env)
    try:
        first.wait(lambda s: s.consumed >= len(events))
    finally:
        first.close()
    before = measured_kpis(backend)
    # Kafka forgets the commits: everything is delivered again to the next sink
    rewind_group(env)
    second = Running(env)
    try:
        second.wait(lambda s: s.consumed >= len(events))
    finally:
        stats = second.close()
    assert (stats.fenced, stats.inserted) == (len(events), 0)
    ids = event_ids(backend, {n for n, _ in events})
    assert len(ids) == len(set(ids)) == len(events)  # no duplicate even without FINAL
    after = measured_kpis(backend)
    assert after == before
    assert after["feedback_within_24h"] == pytest.approx(expected["feedback_within_24h"])
    assert after["personalised_share"] == pytest.approx(expected["personalised_share"])


def test_a_row_clickhouse_rejects_goes_to_the_dlq_and_the_rest_lands(env: Settings) -> None:
    backend = make_backend(env)
    migrate(backend)
    backend.execute(
        f"ALTER TABLE {backend.database}.transaction ADD COLUMN guard UInt8 "
        "MATERIALIZED throwIf(amount_minor = -424242)"
    )
    events = sample_events(500, seed=33, names=["transaction"])
    bad = {events[i][1]["event_id"] for i in (10, 250, 499)}
    for i in (10, 250, 499):
        events[i][1]["amount_minor"] = -424242
    produce(env, events)
    running = Running(env)
    try:
        running.wait(lambda s: s.consumed >= len(events))
    finally:
        stats = running.close()
    assert stats.dead_letters == 3
    stored = set(event_ids(backend, {"transaction"}))
    assert stored == {r["event_id"] for _, r in events} - bad
    letters = read_dlq(env, 3)
    assert [h[H_ERROR_REASON] for h in letters] == ["clickhouse_rejected"] * 3
    assert all("throwIf" in h[H_ERROR_MESSAGE] for h in letters)
    assert all(h[H_ERROR_CLASS] == "ClickHouseRejectedError" for h in letters)
    assert len({h[H_SOURCE_OFFSET] for h in letters}) == 3


def committed(settings: Settings, topic: str) -> dict[int, int]:
    """The sink group's committed offset per partition of ``topic`` (absent: none)."""
    admin = AdminClient(confluent_config(settings))
    request = ConsumerGroupTopicPartitions(
        settings.clickhouse.sink_group_id,
        [TopicPartition(settings.topic(topic), p) for p in range(settings.kafka.partitions)],
    )
    result = admin.list_consumer_group_offsets([request])
    group = next(iter(result.values())).result(timeout=30)
    return {tp.partition: tp.offset for tp in group.topic_partitions if tp.offset >= 0}


def test_tombstones_are_skipped_committed_and_never_dead_lettered(env: Settings) -> None:
    # the profiles processor's tombstone for an erased customer: key set, value null
    snapshots = sample_events(20, seed=34, names=["profile_snapshot"])
    produce(env, snapshots)
    producer = Producer(confluent_config(env))
    gone = [r["customer_id"] for _, r in snapshots[:3]]
    for customer in gone:
        producer.produce(env.topic("profile_snapshot"), key=customer.encode(), value=None)
    assert producer.flush(30) == 0
    others = sample_events(200, seed=35, names=["transaction"])
    produce(env, others)
    backend = make_backend(env)
    migrate(backend)
    running = Running(env)
    try:
        running.wait(lambda s: s.consumed >= len(snapshots) + len(gone) + len(others))
        # offsets are committed past the tombstones (the lag of the topic reaches 0)
        deadline = time.monotonic() + 30
        while sum(committed(env, "profile_snapshot").values()) < len(snapshots) + len(gone):
            assert time.monotonic() < deadline, committed(env, "profile_snapshot")
            time.sleep(0.2)
    finally:
        stats = running.close()
    assert stats.tombstones == len(gone)
    assert stats.dead_letters == 0
    assert read_dlq(env, 1, timeout=3.0) == []
    assert sorted(event_ids(backend, {"profile_snapshot", "transaction"})) == sorted(
        r["event_id"] for _, r in snapshots + others
    )


# -- ClickHouse outages and crashes of the sink: on a private server, so nobody else is hit -----


@pytest.fixture
def private_clickhouse(local_stack: LocalStack, tmp_path: Path) -> Iterator[Settings]:
    """Settings whose ClickHouse is a server of our own (stopped and started by the test)."""
    from cxstream.stack import manager

    name = f"t{uuid.uuid4().hex[:10]}"
    port = free_port()
    base = local_stack.settings
    settings = base.model_copy(
        update={
            "stack": base.stack.model_copy(
                update={
                    "home": tmp_path / "stack",
                    "clickhouse_port": port,
                    "clickhouse_http_port": free_port(),
                }
            ),
            "kafka": base.kafka.model_copy(update={"topic_prefix": name, "partitions": 2}),
            "clickhouse": base.clickhouse.model_copy(
                update={
                    "host": "127.0.0.1",
                    "port": port,
                    "database": name,
                    "sink_group_id": f"{name}-sink",
                    "sink_batch_max_rows": 2000,
                    "sink_batch_max_seconds": 0.3,
                    "sink_retry_initial_seconds": 0.2,
                    "sink_retry_max_seconds": 1.0,
                    "connect_timeout_seconds": 1.0,
                    "query_timeout_seconds": 10.0,
                }
            ),
        }
    )
    manager.start_service("clickhouse", settings)
    specs = platform_topics(settings)
    ensure_topics(settings, specs)
    try:
        yield settings
    finally:
        delete_topics(settings, [s.name for s in specs])
        drop_group(settings)
        manager.stop_service("clickhouse", settings)


def test_an_outage_pauses_the_sink_which_resumes_by_itself(private_clickhouse: Settings) -> None:
    from cxstream.stack import manager

    settings = private_clickhouse
    backend = make_backend(settings)
    migrate(backend)
    events = sample_events(6000, seed=34, names=["channel_interaction", "transaction"])
    produce(settings, events[:2000])
    running = Running(settings)
    try:
        running.wait(lambda s: s.inserted >= 2000)
        manager.stop_service("clickhouse", settings)
        produce(settings, events[2000:])  # traffic goes on during the outage
        running.wait(lambda s: s.retries >= 3, timeout=30)
        # the consuming thread notices a retrying insert worker after its current consume
        # (at most sink_batch_max_seconds), then pauses
        running.wait(lambda s: running.sink.paused, timeout=5)
        consumed = running.sink.stats.consumed
        held = running.sink.buffered
        time.sleep(3)
        # paused: nothing more is taken from Kafka while the batch in hand waits
        assert running.sink.stats.consumed == consumed
        assert running.sink.buffered <= held + settings.clickhouse.sink_batch_max_rows
        # the batches in the insert workers plus the one built meanwhile
        connections = running.sink.insert_connections
        assert held <= (connections + 1) * settings.clickhouse.sink_batch_max_rows
        manager.start_service("clickhouse", settings)
        names = {"channel_interaction", "transaction"}
        running.wait(lambda s: len(event_ids(backend, names)) >= len(events), timeout=60)
        running.wait(lambda s: not running.sink.paused, timeout=10)  # resumed by itself
    finally:
        stats = running.close()
    assert stats.paused_seconds > 3
    ids = event_ids(backend, {"channel_interaction", "transaction"})
    assert sorted(ids) == sorted(r["event_id"] for _, r in events)


@pytest.mark.slow
def test_sigkilled_sinks_lose_nothing_and_duplicate_nothing(private_clickhouse: Settings) -> None:
    settings = private_clickhouse
    backend = make_backend(settings)
    migrate(backend)
    events = sample_events(12_000, seed=35)
    env = {
        **os.environ,
        "CX_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "CX_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "CX_CLICKHOUSE__HOST": "127.0.0.1",
        "CX_CLICKHOUSE__PORT": str(settings.clickhouse.port),
        "CX_CLICKHOUSE__DATABASE": settings.clickhouse.database,
        "CX_CLICKHOUSE__SINK_GROUP_ID": settings.clickhouse.sink_group_id,
        "CX_CLICKHOUSE__SINK_BATCH_MAX_ROWS": "700",
        "CX_CLICKHOUSE__SINK_BATCH_MAX_SECONDS": "0.2",
        # a restarted sink takes the killed one's place at once (no session timeout wait)
        "CX_CLICKHOUSE__SINK_INSTANCE_ID": "sink-0",
    }

    def paced() -> None:  # a stream, not a backlog: about 2000 events/s for six seconds
        for first in range(0, len(events), 500):
            produce(settings, events[first : first + 500])
            time.sleep(0.25)

    producer = threading.Thread(target=paced)
    producer.start()
    rng = random.Random(35)
    for _ in range(3):
        before = count_all(backend, events)
        process = subprocess.Popen(
            [sys.executable, "-c", "from sinks.clickhouse.cli import sink; sink()"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # kill it mid-stream: once it has stored some batches, at a random moment
        target = min(before + 1000, len(events) - 1)
        deadline = time.monotonic() + 30
        while count_all(backend, events) < target and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.3))
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        assert count_all(backend, events) > before, "the killed sink stored nothing"
    producer.join()
    # a last sink runs to the end (in this process, to read its counters)
    final = Running(
        settings.model_copy(
            update={
                "clickhouse": settings.clickhouse.model_copy(update={"sink_instance_id": "sink-0"})
            }
        )
    )
    try:
        final.wait(lambda s: count_all(backend, events) >= len(events), timeout=90)
    finally:
        stats = final.close()
    ids = event_ids(backend, {n for n, _ in events})
    assert len(ids) == len(set(ids)), "a row was inserted twice"
    assert set(ids) == {r["event_id"] for _, r in events}
    assert 0 < stats.inserted < len(events)  # the killed sinks did part of the work
    fenced = backend.query(f"SELECT sum(fenced_rows) FROM {backend.database}.sink_batches")[0][0]
    print(f"final sink: {stats}; rows fenced after kills, all sinks: {fenced}")


def count_all(backend: ClickHouseBackend, events: Events) -> int:
    return sum(count(backend, name) for name in {n for n, _ in events})


class _GatedBackend:
    """A server backend whose data inserts fail like an outage until ``open`` is set."""

    def __init__(self, inner: ClickHouseBackend) -> None:
        self.inner = inner
        self.open = threading.Event()
        #: (partition, offset) of every row refused while closed
        self.refused: list[tuple[int, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def insert(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]]) -> None:
        from sinks.clickhouse.errors import ClickHouseUnavailableError

        if not self.open.is_set() and table != "sink_batches":
            partitions = data[list(columns).index("kafka_partition")]
            offsets = data[list(columns).index("kafka_offset")]
            self.refused.extend(zip(partitions, offsets, strict=True))
            raise ClickHouseUnavailableError("gated (test)")
        self.inner.insert(table, columns, data)


def _committed(settings: Settings, topic: str) -> dict[int, int]:
    consumer = Consumer(
        confluent_config(settings, **{"group.id": settings.clickhouse.sink_group_id})
    )
    try:
        found = consumer.committed(
            [TopicPartition(topic, p) for p in range(settings.kafka.partitions)], timeout=10
        )
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found if tp.offset >= 0}


def test_a_batch_stuck_on_one_connection_holds_back_later_commits(env: Settings) -> None:
    """Two insert connections: while one batch retries on one of them, a later batch lands on
    the other but its offsets are not committed before the stuck batch is in."""
    if env.clickhouse.host is None:
        pytest.skip("embedded chdb has one insert connection")
    settings = env.model_copy(
        update={
            "clickhouse": env.clickhouse.model_copy(
                update={"insert_connections": 2, "sink_batch_max_rows": 300}
            )
        }
    )
    backend = make_backend(settings)
    migrate(backend)
    events = sample_events(3000, seed=36, names=["channel_interaction"])
    produce(settings, events)
    gated = _GatedBackend(make_backend(settings))
    running = Running(settings, gated, backend_factory=lambda: make_backend(settings))
    sink = running.sink
    assert sink.insert_connections == 2
    topic = settings.topic("channel_interaction")
    table = f"{backend.database}.channel_interaction"
    try:
        deadline = time.monotonic() + 60
        landed_later: list[tuple[int, int]] = []
        while not landed_later:
            assert running.error is None, running.error
            assert time.monotonic() < deadline, f"no later batch landed: {sink.stats}"
            time.sleep(0.2)
            if not gated.refused:
                continue
            first_refused = {
                p: min(o for q, o in gated.refused if q == p) for p, _ in gated.refused
            }
            landed_later = [
                (int(p), int(o))
                for p, o in backend.query(f"SELECT kafka_partition, kafka_offset FROM {table}")
                if int(p) in first_refused and int(o) > first_refused[int(p)]
            ]
        time.sleep(1.0)  # time enough for a wrong commit to happen
        committed = _committed(settings, topic)
        for partition, offset in committed.items():
            if partition in first_refused:
                assert offset <= first_refused[partition], (committed, first_refused)
        assert sink.paused  # backpressure while the head of the line retries
        gated.open.set()
        deadline = time.monotonic() + 60
        while count(backend, "channel_interaction") < len(events):
            assert running.error is None, running.error
            assert time.monotonic() < deadline, sink.stats
            time.sleep(0.2)
        deadline = time.monotonic() + 30
        ends = dict.fromkeys(range(settings.kafka.partitions), 0)
        for p, o in backend.query(
            f"SELECT kafka_partition, max(kafka_offset) FROM {table} GROUP BY kafka_partition"
        ):
            ends[int(p)] = int(o) + 1
        while _committed(settings, topic) != {p: o for p, o in ends.items() if o}:
            assert time.monotonic() < deadline, (_committed(settings, topic), ends)
            time.sleep(0.3)
    finally:
        running.close()  # raises the sink's error, if any
    ids = event_ids(backend, {"channel_interaction"})
    assert sorted(ids) == sorted(r["event_id"] for _, r in events)  # all, none twice
