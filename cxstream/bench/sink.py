"""``cxstream bench sink``: the ClickHouse sink against raw limits measured in the same run.

Figures:

- ``insert``: decoded rows already in memory -> ClickHouse server, columnar inserts of
  ``insert_batch_rows`` rows through clickhouse-driver into ``channel_interaction`` with all its
  materialized views (three rollup grains, customer days, the offsets fence), i.e. the real
  write path as the sink does it (one connection); ``insert_N_connections``: the same with
  ``connections`` (2) connections inserting whole blocks from their own threads, what one
  process can push (the sink inserts over ``clickhouse.insert_connections`` connections, so
  the target is judged on this figure at that count); ``insert_driver_writer``: one connection
  with clickhouse-driver's own column writers (``clickhouse.fast_insert_writer=false``, the
  writer before sinks/clickhouse/native.py), same rows; ``insert_raw_only`` into a copy of the
  table without views; ``row_build``
  (decoded record -> columns, pseudonyms included) for the CPU side.
- ``sink``: the whole consuming sink (Kafka -> decode -> rows -> insert -> commit) on
  ``events`` events, against two raw references measured on the same topic in the same run:
  ``raw_consume_decode``, confluent-kafka consume + ``AvroCodec.decode`` per message (what
  every consumer of the platform does; the reference of this figure since it was first
  measured), and ``raw_consume_decode_columns``, the same consume with the sink's own decoder
  (each consumed batch straight into columns, ``AvroCodec.columns_plan``: the fastest decode
  here, so ``sink_vs_raw_columns`` is the stricter ratio). Rates are from the first message
  to the last, so consumer-group joins do not count.
- ``sink_processes`` (option ``processes``, default 2; 1 skips it): that many sink processes
  in one consumer group on the same events (how the sink scales out; on these 2 cores they
  share the CPU with ClickHouse and the broker), from the first message any of them consumed
  to the poll that sees the last row; with each process's peak RSS.
- ``batch_sweep`` (option ``sweep=true``): the sink's rate per ``sink_batch_max_rows``, how the
  default was chosen.
- ``latency`` (issue 3: "at 10k events/s sustained, p99 delay from produce to queryable <= 2 s";
  option ``latency``, default true; ``latency=only`` runs just this part): the real consuming
  sink (:class:`ClickHouseSink` in a thread, its own fresh database, group and topic) while the
  producer SDK sends ``rate`` (10000) events/s for ``duration`` (30) s, rate-limited in ticks
  of ``tick_ms`` (10) ms. Every ``sample_every``-th (50th) event is tracked: its send time
  (just before ``EventProducer.produce``), its Kafka ack (delivery report) and the start of the
  first poll (every ``poll_ms``, 100 ms, ``WHERE event_id IN (pending)``) that sees it in
  ``channel_interaction``. Reported: p50/p95/p99/max of produce -> queryable and of its two
  parts (produce -> Kafka ack, ack -> queryable), the achieved rate, events lost (produced but
  not stored) and the sink's batches from its ``sink_batches`` telemetry. A poll sees what
  landed before it started, so a delay is over by at most one poll interval plus the query.
  ``latency_batch_seconds`` / ``latency_batch_rows`` override the sink's batch settings for
  this part only (default: the settings'). ``latency_alt``: the same with
  ``sink_batch_max_seconds`` = ``latency_alt_batch_seconds`` (0.25; 0 skips it). The sink
  runs as ``cxstream sink`` in a subprocess, as deployed (``sink=thread``: in this process,
  sharing the GIL with the producer and the poller, which costs it about 0.2 s of p99).

The server is ``clickhouse.host`` or, when unset, the local stack's (127.0.0.1:
``stack.clickhouse_port``). Options: ``rows`` (300000), ``events`` (600000: a dozen batches,
so the first batch's decode and the last one's insert, which nothing overlaps, weigh little),
``insert_batch_rows`` (50000), ``connections`` (2), ``batch_rows`` (the sink's, default from
settings), ``sweep``, ``latency`` and the latency options above.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from confluent_kafka.admin import AdminClient

from cxstream.errors import ServiceError
from cxstream.settings import Settings
from sinks.clickhouse.backend import ServerBackend
from sinks.clickhouse.migrations import migrate
from sinks.clickhouse.rows import Origin, RowBuilder, TableBatch
from sinks.clickhouse.sink import ClickHouseSink
from sinks.clickhouse.testing import sample_events
from streams.codec import HEADER_SIZE, AvroCodec
from streams.gc_tuning import tuned_garbage_collector
from streams.kafka_config import confluent_config
from streams.producer import DeliveryReport, EventProducer
from streams.registry import EmbeddedRegistry
from streams.topics import TopicSpec, delete_topics, ensure_topics

EVENT = "channel_interaction"


class _ServerCpu:
    """CPU seconds of the local ClickHouse server process (``/proc``), when it is the local
    stack's: how much of the server's CPU a figure costs, next to this process's own."""

    def __init__(self, settings: Settings | None) -> None:
        self.pid: int | None = None
        if settings is None:
            return
        ch = settings.clickhouse
        if ch.host in ("127.0.0.1", "localhost") and ch.port == settings.stack.clickhouse_port:
            with contextlib.suppress(Exception):  # no stack of ours: the figures say None
                from cxstream.stack import manager

                found = manager.status(settings, only=["clickhouse"])
                self.pid = found[0].pid if found else None

    def seconds(self) -> float | None:
        if self.pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Cpu:
    """CPU spent between :meth:`start` and :meth:`stop`: this process's and the server's."""

    def __init__(self, server: _ServerCpu) -> None:
        self.server = server
        self.process = 0.0
        self.server_seconds: float | None = None

    def __enter__(self) -> _Cpu:
        self._p, self._s = time.process_time(), self.server.seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.process = time.process_time() - self._p
        end = self.server.seconds()
        self.server_seconds = None if end is None or self._s is None else end - self._s

    def per(self, count: int) -> dict[str, float | None]:
        """us of CPU per item (process, server) and items per CPU-second of both together."""
        server = self.server_seconds
        total = self.process + (server or 0.0)
        return {
            "process_cpu_us": round(self.process / count * 1e6, 2),
            "server_cpu_us": None if server is None else round(server / count * 1e6, 2),
            "per_cpu_s": round(count / total) if total > 0 else None,
        }


def _settings(settings: Settings, run_id: str, options: dict[str, Any]) -> Settings:
    ch = settings.clickhouse
    update: dict[str, Any] = {"database": f"bench_{run_id}", "sink_group_id": f"bench-{run_id}"}
    if not ch.host:
        update.update(host="127.0.0.1", port=settings.stack.clickhouse_port)
    if "batch_rows" in options:
        update["sink_batch_max_rows"] = int(options["batch_rows"])
    if "batch_seconds" in options:
        update["sink_batch_max_seconds"] = float(options["batch_seconds"])
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


def _insert_rate(
    backends: list[ServerBackend],
    table: str,
    batch: TableBatch,
    size: int,
    cpu: _ServerCpu | None = None,
    figures: dict[str, Any] | None = None,
    name: str = "",
) -> float:
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
    spent = _Cpu(cpu or _ServerCpu(None))
    started = time.perf_counter()  # the rows are in memory, cut into blocks: only inserts count
    with spent:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    elapsed = time.perf_counter() - started
    if figures is not None:
        per = spent.per(len(batch))
        figures[f"{name}_client_cpu_us_per_row"] = per["process_cpu_us"]
        figures[f"{name}_server_cpu_us_per_row"] = per["server_cpu_us"]
        figures[f"{name}_rows_per_cpu_s"] = per["per_cpu_s"]
    if errors:
        raise ServiceError(f"insert benchmark failed on {table}: {errors[0]}") from errors[0]
    return len(batch) / elapsed


def insert_figures(settings: Settings, rows: int, size: int, connections: int) -> dict[str, Any]:
    backends = [ServerBackend(settings) for _ in range(max(1, connections))]
    backend = backends[0]
    ch = settings.clickhouse
    plain_writer = ch.model_copy(update={"fast_insert_writer": False})
    driver_writer = ServerBackend(settings.model_copy(update={"clickhouse": plain_writer}))
    builder = RowBuilder(settings)
    records = _records(rows)
    cpu = _ServerCpu(settings)
    spent: dict[str, Any] = {}
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
        _insert_rate([driver_writer], f"{EVENT}_plain", warm, len(warm))
        single = _insert_rate(backends[:1], EVENT, batch, size, cpu, spent, "insert")
        backend.execute(f"TRUNCATE TABLE {db}.{EVENT}")
        driver = _insert_rate(
            [driver_writer], EVENT, batch, size, cpu, spent, "insert_driver_writer"
        )
        backend.execute(f"TRUNCATE TABLE {db}.{EVENT}")
        plain = _insert_rate(
            backends[:1], f"{EVENT}_plain", batch, size, cpu, spent, "insert_raw_only"
        )
        backend.execute(f"TRUNCATE TABLE {db}.{EVENT}")
        parallel = _insert_rate(
            backends, EVENT, batch, size, cpu, spent, f"insert_{len(backends)}_connections"
        )
        stored = backend.query(f"SELECT uniqExact(event_id) FROM {db}.{EVENT}")[0][0]
        if stored != rows:
            raise ServiceError(f"insert benchmark stored {stored} of {rows} events")
        return {
            "rows": rows,
            "columns": len(batch.columns),
            "insert_batch_rows": size,
            "insert_rows_per_s": round(single),
            "insert_driver_writer_rows_per_s": round(driver),
            f"insert_{len(backends)}_connections_rows_per_s": round(parallel),
            "insert_raw_only_rows_per_s": round(plain),
            "row_build_rows_per_s": round(build_rate),
            **spent,
            "server_version": backend.server_version(),
        }
    finally:
        backend.execute(f"DROP DATABASE IF EXISTS {backend.database}")
        for b in [*backends, driver_writer]:
            b.close()


def _produce(settings: Settings, records: list[dict[str, Any]]) -> None:
    with EventProducer(settings, AvroCodec(EmbeddedRegistry())) as producer:
        for record in records:
            producer.produce(EVENT, record)
        producer.flush()


def raw_consume_decode(
    settings: Settings,
    topic: str,
    count: int,
    cpu: dict[str, float] | None = None,
    *,
    columns: bool = False,
) -> float:
    """confluent-kafka ``consume`` in batches + decode: the raw reference rate (events/s).

    Decoding is per message into events (``AvroCodec.decode``, what every consumer of the
    platform does), or with ``columns`` per consumed batch straight into columns
    (``AvroCodec.columns_plan``, the sink's own decoder: the fastest decode there is here).
    ``cpu``, if given, gets ``seconds``: this process's CPU from the first message to the last.
    """
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
    seen, first, first_cpu = 0, 0.0, 0.0
    deadline = time.monotonic() + 120
    try:
        while seen < count:
            if time.monotonic() > deadline:
                raise ServiceError(f"raw consumer read {seen} of {count} events in 120 s")
            batch = consumer.consume(num_messages=10_000, timeout=1.0)
            errors = [m.error() for m in batch if m.error() is not None]
            for error in errors:
                if error.code() != KafkaError._PARTITION_EOF:  # type: ignore[union-attr]
                    raise ServiceError(f"raw consumer: {error}")
            good = [m for m in batch if m.error() is None] if errors else batch
            if not good:
                continue
            if not seen:
                first, first_cpu = time.perf_counter(), time.process_time()
            if columns:  # one writer schema here: the topic holds one event type
                values: list[bytes] = list(map(Message.value, good))  # type: ignore[arg-type]
                codec.columns_plan(values[0][:HEADER_SIZE]).read(values)
            else:
                for message in good:
                    codec.decode(message.value())  # type: ignore[arg-type]
            seen += len(good)
        if cpu is not None:
            cpu["seconds"] = time.process_time() - first_cpu
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
        server = _ServerCpu(settings)
        first = None
        first_cpu, first_server = 0.0, None
        # the collector as `cxstream sink` tunes it for its process
        with tuned_garbage_collector(settings.worker.gc_thresholds):
            started = time.perf_counter()
            thread.start()
            deadline = time.monotonic() + 300
            while sink.stats.inserted < count and not errors and time.monotonic() < deadline:
                if first is None and sink.buffered:
                    first = time.perf_counter()
                    first_cpu, first_server = time.process_time(), server.seconds()
                time.sleep(0.005)
            done = time.perf_counter()
            done_cpu, done_server = time.process_time(), server.seconds()
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
            # this process (consume, decode, rows, insert; librdkafka's threads included)
            "process_cpu_us_per_event": round((done_cpu - first_cpu) / count * 1e6, 2),
            "events_per_process_cpu_s": round(count / max(done_cpu - first_cpu, 1e-9)),
            "server_cpu_us_per_event": (
                round((done_server - first_server) / count * 1e6, 2)
                if done_server is not None and first_server is not None
                else None
            ),
        }
    finally:
        backend.execute(f"DROP DATABASE IF EXISTS {backend.database}")
        backend.close()
        _drop_group(settings)


def _sink_process(settings: Settings, stop: Any, ready: Any, first: Any, peak: Any) -> None:
    """One ``ClickHouseSink`` in a child process, until ``stop`` is set; ``first`` gets the
    wall-clock time it first held a consumed message, ``peak`` its peak RSS in MiB."""
    import resource

    backend = ServerBackend(settings)
    try:
        sink = ClickHouseSink(settings, backend, topics=[settings.topic(EVENT)])
        ready.set()
        stopping = threading.Event()

        def watch() -> None:
            while not stop.wait(0.005):
                if not first.value and (sink.buffered or sink.stats.inserted):
                    first.value = time.time()
            stopping.set()

        threading.Thread(target=watch, daemon=True).start()
        with tuned_garbage_collector(settings.worker.gc_thresholds):
            sink.run(stopping)
    finally:
        backend.close()
        peak.value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def sink_rate_processes(settings: Settings, count: int, processes: int) -> dict[str, Any]:
    """``processes`` sinks in one consumer group on ``count`` events already in Kafka.

    The rate runs from the first message any of them consumed (so group joins do not count,
    as in :func:`sink_rate`) to the poll of ClickHouse that sees the last row (late by at most
    the 20 ms poll interval plus the count query).
    """
    import multiprocessing

    backend = ServerBackend(settings)
    context = multiprocessing.get_context("spawn")  # librdkafka threads do not survive fork
    stop, readies = context.Event(), [context.Event() for _ in range(processes)]
    firsts = [context.Value("d", 0.0) for _ in range(processes)]
    peaks = [context.Value("d", 0.0) for _ in range(processes)]
    children = [
        context.Process(
            target=_sink_process, args=(settings, stop, ready, first, peak), daemon=True
        )
        for ready, first, peak in zip(readies, firsts, peaks, strict=True)
    ]
    figures: dict[str, Any] = {"processes": processes}
    try:
        migrate(backend)
        table = f"{backend.database}.{EVENT}"
        for child in children:
            child.start()
        deadline = time.monotonic() + 300
        while True:
            if any(not child.is_alive() for child in children):
                raise ServiceError("a sink process died during the benchmark")
            stored = int(backend.query(f"SELECT count() FROM {table}")[0][0])
            done = time.time()
            if stored >= count or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if stored < count:
            raise ServiceError(f"{processes} sinks stored {stored} of {count} events in 300 s")
        started = min((f.value for f in firsts if f.value), default=done)
        figures["events_per_s"] = round(count / max(done - started, 1e-6))
        figures["seconds"] = round(done - started, 2)
    finally:
        stop.set()
        for child in children:
            child.join(30)
            if child.is_alive():
                child.kill()
        backend.execute(f"DROP DATABASE IF EXISTS {backend.database}")
        backend.close()
        _drop_group(settings)
    # what batches in flight cost: sink_batch_max_rows x (insert_connections + 2) at most
    figures["peak_rss_mib_per_process"] = round(max(p.value for p in peaks), 1)
    return figures


def _drop_group(settings: Settings) -> None:
    admin = AdminClient(confluent_config(settings))
    for future in admin.delete_consumer_groups([settings.clickhouse.sink_group_id]).values():
        with contextlib.suppress(KafkaException):  # already gone: not worth failing the run
            future.result(timeout=30)


def _percentiles(values: list[float]) -> dict[str, float | None]:
    """Nearest-rank p50/p95/p99 and max, in ms (``None`` when there is nothing to rank)."""
    if not values:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    ranked = sorted(values)

    def rank(q: float) -> float:
        return round(ranked[max(0, math.ceil(q * len(ranked)) - 1)] * 1000, 1)

    return {
        "p50_ms": rank(0.50),
        "p95_ms": rank(0.95),
        "p99_ms": rank(0.99),
        "max_ms": round(ranked[-1] * 1000, 1),
    }


class _Visibility:
    """Polls ClickHouse for tracked event ids; notes the start of the first poll seeing each."""

    def __init__(self, backend: ServerBackend, table: str, interval: float) -> None:
        self.backend, self.table, self.interval = backend, table, interval
        #: (event id, send time) in send order, appended by the producing thread
        self.tracked: list[tuple[str, float]] = []
        self.seen: dict[str, float] = {}
        self.polls = 0
        self.query_seconds: list[float] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()

    def poll_once(self) -> None:
        known = len(self.tracked)
        pending = [i for i, _ in self.tracked[:known] if i not in self.seen]
        if not pending:
            return
        ids = ",".join(f"'{i}'" for i in pending)  # our own uuid4 strings: nothing to escape
        started = time.perf_counter()
        rows = self.backend.query(f"SELECT event_id FROM {self.table} WHERE event_id IN ({ids})")
        self.query_seconds.append(time.perf_counter() - started)
        self.polls += 1
        for (event_id,) in rows:
            self.seen.setdefault(str(event_id), started)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                tick = time.perf_counter()
                self.poll_once()
                self.stop.wait(max(0.0, self.interval - (time.perf_counter() - tick)))
        except BaseException as exc:
            self.errors.append(exc)


class _SinkRunner:
    """The sink under test: :class:`ClickHouseSink` in a thread of this process (default) or
    ``cxstream sink`` as a subprocess (``sink=process``: its own interpreter, as deployed; it
    subscribes to every event topic of the bench's prefix, only one of which exists)."""

    def __init__(self, settings: Settings, backend: ServerBackend, topic: str, mode: str) -> None:
        self.settings, self.backend, self.topic, self.mode = settings, backend, topic, mode
        self.stop_event = threading.Event()
        self.errors: list[BaseException] = []
        self.thread: threading.Thread | None = None
        self.process: subprocess.Popen[bytes] | None = None
        # the subprocess's output (for the error message if it dies), closed by stop()
        self.log = tempfile.TemporaryFile()  # noqa: SIM115

    def start(self) -> None:
        if self.mode == "process":
            ch, kafka = self.settings.clickhouse, self.settings.kafka
            env = os.environ | {
                "CX_CLICKHOUSE__HOST": str(ch.host),
                "CX_CLICKHOUSE__PORT": str(ch.port),
                "CX_CLICKHOUSE__DATABASE": ch.database,
                "CX_CLICKHOUSE__SINK_GROUP_ID": ch.sink_group_id,
                "CX_CLICKHOUSE__SINK_BATCH_MAX_ROWS": str(ch.sink_batch_max_rows),
                "CX_CLICKHOUSE__SINK_BATCH_MAX_SECONDS": str(ch.sink_batch_max_seconds),
                "CX_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
                "CX_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
            }
            command = Path(sys.executable).with_name("cxstream")
            self.process = subprocess.Popen(
                [str(command), "sink"], env=env, stdout=self.log, stderr=subprocess.STDOUT
            )
            return
        sink = ClickHouseSink(self.settings, self.backend, topics=[self.topic])

        def work() -> None:
            try:
                sink.run(self.stop_event)
            except BaseException as exc:
                self.errors.append(exc)

        self.thread = threading.Thread(target=work, name="bench-sink", daemon=True)
        self.thread.start()

    def check(self) -> None:
        """Raise if the sink died."""
        if self.errors:
            raise ServiceError(f"sink failed: {self.errors[0]!r}") from self.errors[0]
        if self.process is not None and self.process.poll() is not None:
            self.log.seek(0)
            tail = self.log.read()[-2000:].decode(errors="replace")
            raise ServiceError(f"cxstream sink exited with {self.process.returncode}: {tail}")

    def stop(self) -> None:
        """Stop the sink, delivering what it holds (idempotent)."""
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(60)
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self.log.close()


def latency_figures(settings: Settings, options: dict[str, Any]) -> dict[str, Any]:
    """Produce -> queryable delay through the running sink at a steady rate (module docstring)."""
    rate = float(options.get("rate", 10_000))
    duration = float(options.get("duration", 30))
    tick = float(options.get("tick_ms", 10)) / 1000
    every = max(1, int(options.get("sample_every", 50)))
    interval = float(options.get("poll_ms", 100)) / 1000
    drain = float(options.get("drain_seconds", 30))
    ch = settings.clickhouse
    update: dict[str, Any] = {}
    if "latency_batch_seconds" in options:
        update["sink_batch_max_seconds"] = float(options["latency_batch_seconds"])
    if "latency_batch_rows" in options:
        update["sink_batch_max_rows"] = int(options["latency_batch_rows"])
    settings = settings.model_copy(update={"clickhouse": ch.model_copy(update=update)})
    ch = settings.clickhouse
    topic = settings.topic(EVENT)
    count = int(rate * duration)
    start_ms = int(time.time() * 1000)
    records = [r for _, r in sample_events(count, seed=11, names=[EVENT], start_ms=start_ms)]
    for record in records:
        record["event_id"] = str(uuid.uuid4())

    ensure_topics(
        settings, [TopicSpec(topic, settings.kafka.partitions, settings.kafka.replication_factor)]
    )
    backend = ServerBackend(settings)
    poll_backend = ServerBackend(settings)
    runner = _SinkRunner(settings, backend, topic, str(options.get("sink", "process")))
    watcher = _Visibility(poll_backend, f"{backend.database}.{EVENT}", interval)
    watch_thread = threading.Thread(target=watcher.run, name="bench-visibility", daemon=True)
    acks: dict[str, float] = {}
    sent_at: dict[str, float] = {}

    def on_delivery(report: DeliveryReport) -> None:
        if report.ok and report.event_id in sent_at:
            acks[report.event_id] = time.perf_counter()

    try:
        migrate(backend)
        runner.start()
        with EventProducer(
            settings, AvroCodec(EmbeddedRegistry()), on_delivery=on_delivery
        ) as producer:
            # warm-up, not measured: until an event is queryable the group has joined and the
            # partitions are assigned and fenced
            warm = [r for _, r in sample_events(100, seed=12, names=[EVENT], start_ms=start_ms)]
            warmups, deadline = 0, time.monotonic() + 90
            warm_ids: list[str] = []
            while True:
                runner.check()
                if time.monotonic() > deadline:
                    raise ServiceError("latency benchmark: no warm-up event queryable in 90 s")
                record = dict(warm[warmups % len(warm)], event_id=str(uuid.uuid4()))
                producer.produce(EVENT, record)
                producer.flush(10)
                warmups += 1
                warm_ids.append(record["event_id"])
                ids = ",".join(f"'{i}'" for i in warm_ids)
                found = poll_backend.query(
                    f"SELECT count() FROM {watcher.table} WHERE event_id IN ({ids})"
                )[0][0]
                if found:
                    break
                time.sleep(0.2)
            time.sleep(1.0)  # let the warm-up batches commit; the sink idles at its batch wait
            watch_thread.start()

            produce = producer.produce
            tracked = watcher.tracked
            now = time.perf_counter
            sent, behind = 0, 0.0
            first = now()
            next_tick = first
            while sent < count:
                due = min(count, int((now() - first) * rate) + 1)
                behind = max(behind, (due - sent) / rate)
                while sent < due:
                    record = records[sent]
                    record["occurred_at"] = int(time.time() * 1000)
                    if sent % every == 0:
                        event_id = record["event_id"]
                        stamp = now()
                        sent_at[event_id] = stamp
                        produce(EVENT, record)
                        tracked.append((event_id, stamp))
                    else:
                        produce(EVENT, record)
                    sent += 1
                next_tick += tick
                # serve delivery reports (ack times) until the next tick
                while (left := next_tick - now()) > 0:
                    producer.poll(left)
            last = now()
            producer.flush(60)
            delivered, failed = producer.delivered, producer.failed

        drain_deadline = time.monotonic() + drain
        while len(watcher.seen) < len(tracked) and time.monotonic() < drain_deadline:
            runner.check()
            if watcher.errors:
                break
            time.sleep(0.1)
        watcher.stop.set()
        watch_thread.join(30)
        if watcher.errors:
            raise ServiceError(f"visibility poller failed: {watcher.errors[0]!r}")
        # the sink has taken everything it will take: stop it (delivering what it holds)
        runner.check()
        runner.stop()

        db = backend.database
        stored, unique = backend.query(f"SELECT count(), uniqExact(event_id) FROM {db}.{EVENT}")[0]
        batches = backend.query(
            "SELECT rows, insert_ms, batch_ms, delay_ms_max FROM "
            f"{db}.sink_batches WHERE target = %(t)s ORDER BY at_ms",
            {"t": topic},
        )
    finally:
        watcher.stop.set()
        runner.stop()
        with contextlib.suppress(Exception):
            backend.execute(f"DROP DATABASE IF EXISTS {backend.database}")
        backend.close()
        poll_backend.close()
        delete_topics(settings, [topic])
        _drop_group(settings)

    total = count + warmups
    delays = [watcher.seen[i] - t for i, t in tracked if i in watcher.seen]
    to_ack = [acks[i] - t for i, t in tracked if i in acks]
    seen = watcher.seen
    ack_to_query = [seen[i] - acks[i] for i, _ in tracked if i in acks and i in seen]
    # the warm-up batches are tiny and early: batch figures cover the steady part
    steady = [b for b in batches if b[0] > 1] or batches
    p99 = _percentiles(delays)["p99_ms"]
    return {
        "target_rate_events_per_s": round(rate),
        "duration_s": duration,
        "events": count,
        "achieved_rate_events_per_s": round((count - 1) / (last - first)) if count > 1 else 0,
        "max_behind_schedule_ms": round(behind * 1000, 1),
        "delivered": delivered,
        "delivery_failed": failed,
        "tracked": len(tracked),
        "tracked_seen": len(delays),
        "events_lost": total - int(unique),
        "duplicates": int(stored) - int(unique),
        "produce_to_queryable": _percentiles(delays),
        "produce_to_kafka_ack": _percentiles(to_ack),
        "kafka_ack_to_queryable": _percentiles(ack_to_query),
        "poll_interval_ms": round(interval * 1000),
        "poll_query": _percentiles(watcher.query_seconds),
        "sink_batches": {
            "batches": len(steady),
            "rows_avg": round(sum(b[0] for b in steady) / len(steady)) if steady else 0,
            "rows_max": max((b[0] for b in steady), default=0),
            "batch_ms": _percentiles([b[2] / 1000 for b in steady]),
            "insert_ms": _percentiles([b[1] / 1000 for b in steady]),
            "delay_ms_max": _percentiles([b[3] / 1000 for b in steady]),
        },
        "sink": runner.mode,
        "sink_batch_max_rows": ch.sink_batch_max_rows,
        "sink_batch_max_seconds": ch.sink_batch_max_seconds,
        "target_p99_ms": 2000,
        "met": p99 is not None and p99 <= 2000 and total == int(unique),
    }


def _latency_parts(settings: Settings, run_id: str, options: dict[str, Any]) -> dict[str, Any]:
    """``latency`` with the sink's settings and, unless ``latency_alt_batch_seconds`` is 0,
    ``latency_alt`` with ``sink_batch_max_seconds`` at that value (0.25 by default: a batch
    window then really lasts about 0.5 s, see ``ClickHouseSink.run``)."""
    parts = {"latency": latency_figures(_settings(settings, f"{run_id}lat", {}), options)}
    alt = float(options.get("latency_alt_batch_seconds", 0.25))
    if alt > 0:
        trial = _settings(settings, f"{run_id}alt", {})
        parts["latency_alt"] = latency_figures(trial, {**options, "latency_batch_seconds": alt})
    return parts


def run(settings: Settings, **options: Any) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    settings = _settings(settings, run_id, options)
    latency = options.get("latency", True)
    if latency == "only":
        return _latency_parts(settings, run_id, options)
    rows = int(options.get("rows", 300_000))
    events = int(options.get("events", 600_000))
    size = int(options.get("insert_batch_rows", 50_000))
    connections = int(options.get("connections", max(2, settings.clickhouse.insert_connections)))
    load_before = os.getloadavg()
    figures: dict[str, Any] = {"insert": insert_figures(settings, rows, size, connections)}

    topic = settings.topic(EVENT)
    spec = TopicSpec(topic, settings.kafka.partitions, settings.kafka.replication_factor)
    ensure_topics(settings, [spec])
    try:
        _produce(settings, _records(events))
        raw_cpu: dict[str, float] = {}
        raw = raw_consume_decode(settings, topic, events, raw_cpu)
        raw_columns_cpu: dict[str, float] = {}
        raw_columns = raw_consume_decode(settings, topic, events, raw_columns_cpu, columns=True)
        sweep_sizes = [5_000, 20_000, 50_000, 100_000] if options.get("sweep") else []
        sweep = {}
        for batch_rows in sweep_sizes:
            trial = _settings(settings, f"{run_id}_{batch_rows}", {"batch_rows": batch_rows})
            trial = trial.model_copy(update={"kafka": settings.kafka})  # same topic
            sweep[str(batch_rows)] = sink_rate(trial, events)["events_per_s"]
        whole = sink_rate(settings, events)
        processes = int(options.get("processes", 2))
        several = None
        if processes > 1:
            trial = _settings(settings, f"{run_id}p{processes}", options)
            trial = trial.model_copy(update={"kafka": settings.kafka})  # same topic
            several = sink_rate_processes(trial, events, processes)
    finally:
        delete_topics(settings, [topic])
    figures["sink"] = {
        "events": events,
        **whole,
        "raw_consume_decode_events_per_s": round(raw),
        "raw_consume_decode_events_per_cpu_s": round(events / max(raw_cpu["seconds"], 1e-9)),
        "sink_vs_raw": round(whole["events_per_s"] / raw, 3),
        # the same ratio per CPU-second of this process: what the shared cores cannot blur
        "sink_vs_raw_per_cpu_s": round(
            whole["events_per_process_cpu_s"] * raw_cpu["seconds"] / events, 3
        ),
        # against the sink's own decoder (whole batches into columns): the stricter reference
        "raw_consume_decode_columns_events_per_s": round(raw_columns),
        "raw_consume_decode_columns_events_per_cpu_s": round(
            events / max(raw_columns_cpu["seconds"], 1e-9)
        ),
        "sink_vs_raw_columns": round(whole["events_per_s"] / raw_columns, 3),
    }
    if several is not None:
        figures["sink_processes"] = {
            **several,
            "sink_vs_raw": round(several["events_per_s"] / raw, 3),
            "sink_vs_raw_columns": round(several["events_per_s"] / raw_columns, 3),
        }
    if sweep:
        figures["batch_sweep_events_per_s"] = sweep
    if latency not in (False, "false"):
        figures.update(_latency_parts(settings, run_id, options))
    ch = settings.clickhouse
    sink_connections = ch.insert_connections
    at_sink = figures["insert"].get(
        f"insert_{sink_connections}_connections_rows_per_s", figures["insert"]["insert_rows_per_s"]
    )
    figures["targets"] = {
        "insert_rows_per_s": 200_000,
        "sink_vs_raw": 0.5,
        # from one process, over the connections the sink uses (clickhouse.insert_connections)
        "insert_connections": sink_connections,
        "insert_met": at_sink >= 200_000,
        "insert_one_connection_met": figures["insert"]["insert_rows_per_s"] >= 200_000,
        "sink_met": figures["sink"]["sink_vs_raw"] >= 0.5,
        "sink_met_vs_columns": figures["sink"]["sink_vs_raw_columns"] >= 0.5,
        "sink_processes_met": several is not None and several["events_per_s"] / raw >= 0.5,
        "sink_processes_met_vs_columns": several is not None
        and several["events_per_s"] / raw_columns >= 0.5,
    }
    if "latency" in figures:
        figures["targets"]["latency_p99_ms"] = 2000
        figures["targets"]["latency_met"] = figures["latency"]["met"]
    figures["load_average"] = {
        "before_1m": round(load_before[0], 2),
        "after_1m": round(os.getloadavg()[0], 2),
        "cores": os.cpu_count(),
    }
    figures["settings"] = {
        "clickhouse": f"{ch.host}:{ch.port}",
        "kafka": settings.kafka.bootstrap_servers,
        "partitions": settings.kafka.partitions,
        "sink_batch_max_rows": ch.sink_batch_max_rows,
        "sink_batch_max_seconds": ch.sink_batch_max_seconds,
        "insert_connections": ch.insert_connections,
        "fast_insert_writer": ch.fast_insert_writer,
        "store_pii_in_clear": settings.privacy.store_pii_in_clear,
    }
    return figures
