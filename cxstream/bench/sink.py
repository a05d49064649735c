"""``cxstream bench sink``: the ClickHouse sink against raw limits measured in the same run.

Figures:

- ``insert``: decoded rows already in memory -> ClickHouse server, columnar inserts of
  ``insert_batch_rows`` rows through clickhouse-driver into ``channel_interaction`` with all its
  materialized views (three rollup grains, customer days, the offsets fence), i.e. the real
  write path as the sink does it (one connection); ``insert_N_connections``: the same with
  ``connections`` (2) connections inserting whole blocks from their own threads, what one
  process can push; ``insert_raw_only`` into a copy of the table without views; ``row_build``
  (decoded record -> columns, pseudonyms included) for the CPU side.
- ``sink``: the whole consuming sink (Kafka -> decode -> rows -> insert -> commit) on
  ``events`` events, against ``raw_consume_decode``: confluent-kafka consume + decode of the
  same topic in the same run (the most any consumer can do here). Rates are from the first
  message to the last, so consumer-group joins do not count.
- ``batch_sweep`` (option ``sweep=true``): the sink's rate per ``sink_batch_max_rows``, how the
  default was chosen.

The server is ``clickhouse.host`` or, when unset, the local stack's (127.0.0.1:
``stack.clickhouse_port``). Options: ``rows`` (300000), ``events`` (200000),
``insert_batch_rows`` (50000), ``connections`` (2), ``batch_rows`` (the sink's, default from
settings), ``sweep``.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from cxstream.errors import ServiceError
from cxstream.settings import Settings
from sinks.clickhouse.backend import ServerBackend
from sinks.clickhouse.migrations import migrate
from sinks.clickhouse.rows import Origin, RowBuilder, TableBatch
from sinks.clickhouse.sink import ClickHouseSink
from sinks.clickhouse.testing import sample_events
from streams.codec import AvroCodec
from streams.kafka_config import confluent_config
from streams.producer import EventProducer
from streams.registry import EmbeddedRegistry
from streams.topics import TopicSpec, delete_topics, ensure_topics

EVENT = "channel_interaction"


def _settings(settings: Settings, run_id: str, options: dict[str, Any]) -> Settings:
    ch = settings.clickhouse
    update: dict[str, Any] = {"database": f"bench_{run_id}", "sink_group_id": f"bench-{run_id}"}
    if not ch.host:
        update.update(host="127.0.0.1", port=settings.stack.clickhouse_port)
    if "batch_rows" in options:
        update["sink_batch_max_rows"] = int(options["batch_rows"])
    return settings.model_copy(
        update={
            "clickhouse": ch.model_copy(update=update),
            "kafka": settings.kafka.model_copy(
                update={"topic_prefix": f"{settings.kafka.topic_prefix}-bench-{run_id}"}
            ),
        }
    )


def _records(count: int) -> list[dict[str, Any]]:
    start = int(time.time() * 1000) - 3_600_000
    return [r for _, r in sample_events(count, seed=5, names=[EVENT], start_ms=start)]


def _build(builder: RowBuilder, records: list[dict[str, Any]], topic: str) -> TableBatch:
    origins = [Origin(topic, i % 4, i, 1) for i in range(len(records))]
    batch, unstorable = builder.build(EVENT, records, origins, int(time.time()))
    if unstorable:
        raise ServiceError(f"benchmark records are not storable: {unstorable[0][1]}")
    return batch


def _insert_rate(backends: list[ServerBackend], table: str, batch: TableBatch, size: int) -> float:
    """Rows/s inserting ``batch`` in blocks of ``size``; with several connections each inserts
    every n-th block from its own thread (whole blocks: splitting them costs the views more)."""
    parts = [batch.slice(i, i + size) for i in range(0, len(batch), size)]
    errors: list[BaseException] = []

    def insert(backend: ServerBackend, mine: list[TableBatch]) -> None:
        try:
            for part in mine:
                backend.insert(table, part.columns, part.data)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=insert, args=(backend, parts[i :: len(backends)]))
        for i, backend in enumerate(backends)
    ]
    started = time.perf_counter()  # the rows are in memory, cut into blocks: only inserts count
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise ServiceError(f"insert benchmark failed on {table}: {errors[0]}") from errors[0]
    return len(batch) / elapsed


def insert_figures(settings: Settings, rows: int, size: int, connections: int) -> dict[str, Any]:
    backends = [ServerBackend(settings) for _ in range(max(1, connections))]
    backend = backends[0]
    builder = RowBuilder(settings)
    records = _records(rows)
    try:
        migrate(backend)
        db = backend.database
        backend.execute(f"CREATE TABLE {db}.{EVENT}_plain AS {db}.{EVENT}")
        started = time.perf_counter()
        batch = _build(builder, records, settings.topic(EVENT))
        build_rate = rows / (time.perf_counter() - started)
        # warm up the connections and the server's caches, not timed
        warm = batch.slice(0, min(rows, 10_000))
        _insert_rate(backends, f"{EVENT}_plain", warm, len(warm))
        single = _insert_rate(backends[:1], EVENT, batch, size)
        plain = _insert_rate(backends[:1], f"{EVENT}_plain", batch, size)
        backend.execute(f"TRUNCATE TABLE {db}.{EVENT}")
        parallel = _insert_rate(backends, EVENT, batch, size)
        stored = backend.query(f"SELECT uniqExact(event_id) FROM {db}.{EVENT}")[0][0]
        if stored != rows:
            raise ServiceError(f"insert benchmark stored {stored} of {rows} events")
        return {
            "rows": rows,
            "columns": len(batch.columns),
            "insert_batch_rows": size,
            "insert_rows_per_s": round(single),
            f"insert_{len(backends)}_connections_rows_per_s": round(parallel),
            "insert_raw_only_rows_per_s": round(plain),
            "row_build_rows_per_s": round(build_rate),
            "server_version": backend.server_version(),
        }
    finally:
        backend.execute(f"DROP DATABASE IF EXISTS {backend.database}")
        for b in backends:
            b.close()


def _produce(settings: Settings, records: list[dict[str, Any]]) -> None:
    with EventProducer(settings, AvroCodec(EmbeddedRegistry())) as producer:
        for record in records:
            producer.produce(EVENT, record)
        producer.flush()


def raw_consume_decode(settings: Settings, topic: str, count: int) -> float:
    """confluent-kafka ``consume`` in batches + decode: the raw reference rate (events/s)."""
    codec = AvroCodec(EmbeddedRegistry(), max_event_bytes=settings.max_event_bytes)
    consumer = Consumer(
        confluent_config(
            settings,
            **{
                "group.id": f"raw-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.max.bytes": 32 * 1024 * 1024,
                "max.partition.fetch.bytes": 4 * 1024 * 1024,
            },
        )
    )
    consumer.subscribe([topic])
    seen, first = 0, 0.0
    deadline = time.monotonic() + 120
    try:
        while seen < count:
            if time.monotonic() > deadline:
                raise ServiceError(f"raw consumer read {seen} of {count} events in 120 s")
            for message in consumer.consume(num_messages=10_000, timeout=1.0):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise ServiceError(f"raw consumer: {error}")
                    continue
                if not seen:
                    first = time.perf_counter()
                codec.decode(message.value())  # type: ignore[arg-type]
                seen += 1
        return count / (time.perf_counter() - first)
    finally:
        consumer.close()


def sink_rate(settings: Settings, count: int) -> dict[str, Any]:
    """The whole sink on ``count`` events already in Kafka (events/s, first to last message)."""
    backend = ServerBackend(settings)
    try:
        migrate(backend)
        sink = ClickHouseSink(settings, backend, topics=[settings.topic(EVENT)])
        stop = threading.Event()
        errors: list[BaseException] = []

        def work() -> None:
            try:
                sink.run(stop)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=work, daemon=True)
        started = time.perf_counter()
        thread.start()
        first = None
        deadline = time.monotonic() + 300
        while sink.stats.inserted < count and not errors and time.monotonic() < deadline:
            if first is None and sink.buffered:
                first = time.perf_counter()
            time.sleep(0.005)
        done = time.perf_counter()
        stop.set()
        thread.join(60)
        if errors:
            raise ServiceError(f"sink failed during the benchmark: {errors[0]!r}") from errors[0]
        if sink.stats.inserted < count:
            raise ServiceError(f"sink inserted {sink.stats.inserted} of {count} events in 300 s")
        return {
            "events_per_s": round(count / (done - (first or started))),
            "seconds": round(done - (first or started), 2),
            "seconds_with_group_join": round(done - started, 2),
            "batches": sink.stats.batches,
            "batch_max_rows": settings.clickhouse.sink_batch_max_rows,
        }
    finally:
        backend.execute(f"DROP DATABASE IF EXISTS {backend.database}")
        backend.close()
        _drop_group(settings)


def _drop_group(settings: Settings) -> None:
    admin = AdminClient(confluent_config(settings))
    for future in admin.delete_consumer_groups([settings.clickhouse.sink_group_id]).values():
        with contextlib.suppress(KafkaException):  # already gone: not worth failing the run
            future.result(timeout=30)


def run(settings: Settings, **options: Any) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    settings = _settings(settings, run_id, options)
    rows = int(options.get("rows", 300_000))
    events = int(options.get("events", 200_000))
    size = int(options.get("insert_batch_rows", 50_000))
    connections = int(options.get("connections", 2))
    figures: dict[str, Any] = {"insert": insert_figures(settings, rows, size, connections)}

    topic = settings.topic(EVENT)
    spec = TopicSpec(topic, settings.kafka.partitions, settings.kafka.replication_factor)
    ensure_topics(settings, [spec])
    try:
        _produce(settings, _records(events))
        raw = raw_consume_decode(settings, topic, events)
        sweep_sizes = [2_000, 5_000, 20_000, 50_000] if options.get("sweep") else []
        sweep = {}
        for batch_rows in sweep_sizes:
            trial = _settings(settings, f"{run_id}_{batch_rows}", {"batch_rows": batch_rows})
            trial = trial.model_copy(update={"kafka": settings.kafka})  # same topic
            sweep[str(batch_rows)] = sink_rate(trial, events)["events_per_s"]
        whole = sink_rate(settings, events)
    finally:
        delete_topics(settings, [topic])
    figures["sink"] = {
        "events": events,
        **whole,
        "raw_consume_decode_events_per_s": round(raw),
        "sink_vs_raw": round(whole["events_per_s"] / raw, 3),
    }
    if sweep:
        figures["batch_sweep_events_per_s"] = sweep
    ch = settings.clickhouse
    figures["targets"] = {
        "insert_rows_per_s": 200_000,
        "sink_vs_raw": 0.5,
        "insert_met": figures["insert"]["insert_rows_per_s"] >= 200_000,
        "sink_met": figures["sink"]["sink_vs_raw"] >= 0.5,
    }
    figures["settings"] = {
        "clickhouse": f"{ch.host}:{ch.port}",
        "kafka": settings.kafka.bootstrap_servers,
        "partitions": settings.kafka.partitions,
        "sink_batch_max_rows": ch.sink_batch_max_rows,
        "sink_batch_max_seconds": ch.sink_batch_max_seconds,
        "store_pii_in_clear": settings.privacy.store_pii_in_clear,
    }
    return figures
