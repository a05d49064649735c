"""``cxstream bench security``: detection quality, worker throughput and flag delay.

Figures:

- ``quality.*``: the detectors (rules + model, default settings) over a simulated stream of a
  seed they were NOT tuned on (option ``seed``, default 4242; tuning used seeds 1 and
  20261207), ``days`` (7) days of ``customers`` (3000) with ``scenarios`` (20) of each type:
  per scenario type recall and precision, false flags per 10,000 benign logins
  (:mod:`processors.security.evaluation`). Run in-process (:class:`MemoryPipeline`), which
  decides exactly like the worker.
- ``engine_*``: the same detection step in-process (no Kafka), rules + model: events/s (wall)
  and CPU us per event of this process (steadier than wall time on a shared machine).
- ``worker.*``: the access events of a second stream (seed + 1, ``worker_days``) preloaded into
  Kafka, then a real ``cxstream worker -p security`` subprocess (rules + model on): access
  events/s from its first to its last processed event (group join excluded) and the worker's
  CPU us per event (``events_per_cpu_s``: its rate with a core to itself), against
  ``raw_consume_decode``: confluent-kafka consume + Avro decode of the same topic in the same run.
- ``latency.*``: the worker running while the stream is produced live at ``rate`` (3000)
  events/s for ``latency_seconds`` (30): delay from the producer send time (= Kafka CreateTime)
  of the event that completes a pattern (the last evidence event) to the flag's arrival at a
  consumer tailing the flag topic; p50/p99/max over every flag (see :func:`_latency`).
- ``load_average_1m.*``: the machine's load at start and end (2 cores shared with other work).

``parts`` (default ``quality,worker,latency``) selects what runs.

Flag delay depends on the worker's consumer: Faust creates aiokafka's consumer with
``fetch_max_wait_ms=1500``, and against Kafka 4.1 here an idle worker's fetch often waits that
long although events keep arriving, so the faster the worker (the more often idle at a live
rate), the longer the delay. Measured with the wait set to 100 ms: see the issue 6 report.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from cxstream.settings import Settings
from cxstream.simulate import ListLabelSink, SimulationConfig, generate, parse_start
from processors.security.evaluation import benign_logins, evaluate
from processors.security.testing import MemoryPipeline
from streams.codec import build_codec
from streams.kafka_config import confluent_config
from streams.producer import DeliveryReport, EventProducer
from streams.topics import delete_topics, ensure_topics, platform_topics

EVENT = "access_event"
TYPES = ("brute_force", "credential_stuffing", "impossible_travel", "staff_bulk_access")


def simulate(seed: int, days: float, customers: int, scenarios: int) -> tuple[list, list]:
    config = SimulationConfig(
        start_ms=parse_start("2026-11-02T00:00:00Z"),
        duration_ms=int(days * 86_400_000),
        seed=seed,
        customers=customers,
        staff=max(50, customers // 40),
        scenarios=dict.fromkeys(TYPES, scenarios),
    )
    sink = ListLabelSink()
    records = [e.record for e in generate(config, sink) if e.name == EVENT]
    return records, [label.to_json() for label in sink.labels]


def quality(settings: Settings, records: list, labels: list) -> dict[str, Any]:
    labelled = {event_id for label in labels for event_id in label["event_ids"]}
    pipe = MemoryPipeline(settings)
    events = pipe.events(records)
    started, cpu_started = time.perf_counter(), time.process_time()
    flags = pipe.run(events)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    figures = evaluate(flags, labels, benign_login_count=benign_logins(records, labelled))
    return {
        **{f"quality.{k}": v for k, v in figures.items()},
        "engine_events_per_s": round(len(records) / elapsed),
        # CPU time of this process: steadier than wall time on a shared machine
        "engine_cpu_us_per_event": round(cpu / len(records) * 1e6, 2),
        "engine_scored_share": round(pipe.engine.stats.scored / len(records), 3),
    }


def _bench_settings(settings: Settings, run: str) -> Settings:
    return settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(
                update={"topic_prefix": f"{settings.kafka.topic_prefix}-bench-sec-{run}"}
            ),
            "worker": settings.worker.model_copy(
                update={"app_id": f"bench-sec-{run}", "data_dir": Path(f"/tmp/bench-sec-{run}")}
            ),
        }
    )


def _stats(settings: Settings) -> dict[str, Any] | None:
    url = f"http://127.0.0.1:{settings.worker.web_port}/v1/stats/security"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            data: dict[str, Any] = json.load(response)
            return data
    except OSError:
        return None


@contextlib.contextmanager
def _worker(settings: Settings, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CX_")}
    env.update(
        CX_KAFKA__BOOTSTRAP_SERVERS=settings.kafka.bootstrap_servers,
        CX_KAFKA__TOPIC_PREFIX=settings.kafka.topic_prefix,
        CX_KAFKA__PARTITIONS=str(settings.kafka.partitions),
        CX_WORKER__APP_ID=settings.worker.app_id,
        CX_WORKER__WEB_PORT=str(settings.worker.web_port),
        CX_WORKER__DATA_DIR=str(settings.worker.data_dir),
        CX_LOG_LEVEL="WARNING",
    )
    exe = str(Path(sys.executable).with_name("cxstream"))
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [exe, "worker", "-p", "security", "--no-ensure-topics"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while _stats(settings) is None:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"security worker did not start; log: {log}")
            time.sleep(0.2)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _produce(settings: Settings, records: list, rate: float | None) -> dict[str, int]:
    """Produce ``records`` (at ``rate`` events/s if given); event id -> Kafka timestamp (ms)."""
    stamps: dict[str, int] = {}

    def on_delivery(report: DeliveryReport) -> None:
        del report

    with EventProducer(settings, build_codec(settings)) as producer:
        started = time.perf_counter()
        for index, record in enumerate(records):
            if rate:
                due = started + index / rate
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
            # create time = now: the Kafka timestamp of the message (producer-set)
            stamps[record["event_id"]] = int(time.time() * 1000)
            producer.produce(EVENT, record)
        producer.flush(60)
    del on_delivery
    return stamps


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_processed(
    settings: Settings, total: int, timeout: float, pid: int | None = None
) -> tuple[float, float, float]:
    """(time of the first processed event, time all ``total`` were processed, worker CPU
    seconds in between; NaN without ``pid``)."""
    first = math.nan
    cpu_first = math.nan
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = _stats(settings) or {}
        events = stats.get("events", 0)
        if events and math.isnan(first):
            first = time.perf_counter()
            cpu_first = cpu_seconds(pid) if pid else math.nan
        if events >= total:
            cpu = cpu_seconds(pid) - cpu_first if pid else math.nan
            return first, time.perf_counter(), cpu
        time.sleep(0.05)
    raise RuntimeError(f"security worker processed fewer than {total} events in {timeout} s")


def _raw_consume_decode(settings: Settings, total: int) -> tuple[float, float]:
    """(events/s, CPU seconds of this process) of confluent-kafka consume + Avro decode."""
    codec = build_codec(settings)
    consumer = Consumer(
        {
            **confluent_config(settings),
            "group.id": f"{settings.worker.app_id}-raw",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([settings.topic(EVENT)])
    seen = 0
    started = cpu_started = math.nan
    try:
        while seen < total:
            batch = consumer.consume(10_000, 1.0)
            if batch and math.isnan(started):
                started, cpu_started = time.perf_counter(), time.process_time()
            for message in batch:
                value = message.value()
                if not message.error() and value is not None:
                    codec.decode(value)
                    seen += 1
        return total / (time.perf_counter() - started), time.process_time() - cpu_started
    finally:
        consumer.close()


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.nan


def run(
    settings: Settings,
    seed: int = 4242,
    days: float = 7,
    customers: int = 3000,
    scenarios: int = 20,
    worker_days: float = 2,
    rate: float = 3000,
    latency_seconds: float = 30,
    parts: str = "quality,worker,latency",
) -> dict[str, Any]:
    selected = set(parts.split(","))
    figures: dict[str, Any] = {
        "seed": seed,
        "load_average_1m.start": round(os.getloadavg()[0], 2),
        "settings.security": settings.security.model_dump(mode="json"),
    }
    records: list = []
    if selected & {"quality", "latency"}:
        records, labels = simulate(seed, days, customers, scenarios)
        figures.update({"access_events": len(records), "labels": len(labels)})
    if "quality" in selected:
        figures.update(quality(settings, records, labels))
    if "worker" in selected:
        figures.update(_worker_throughput(settings, seed, worker_days, customers, scenarios))
    if "latency" in selected:
        figures.update(_latency(settings, records, rate, latency_seconds))
    figures["load_average_1m.end"] = round(os.getloadavg()[0], 2)
    return figures


def _worker_throughput(
    settings: Settings, seed: int, worker_days: float, customers: int, scenarios: int
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    # worker throughput on a preloaded stream
    worker_records, _ = simulate(seed + 1, worker_days, customers, scenarios)
    run_id = uuid.uuid4().hex[:8]
    bench = _bench_settings(settings, run_id)
    specs = platform_topics(bench)
    ensure_topics(bench, specs)
    log = Path(f"/tmp/bench-sec-{run_id}.log")
    try:
        _produce(bench, worker_records, None)
        raw_rate, raw_cpu = _raw_consume_decode(bench, len(worker_records))
        figures["worker.raw_consume_decode_events_per_s"] = round(raw_rate)
        figures["worker.raw_consume_decode_cpu_us_per_event"] = round(
            raw_cpu / len(worker_records) * 1e6, 1
        )
        with _worker(bench, log) as proc:
            first, done, cpu = _wait_processed(bench, len(worker_records), 600, proc.pid)
        rate_worker = len(worker_records) / (done - first)
        figures["worker.events"] = len(worker_records)
        figures["worker.events_per_s"] = round(rate_worker)
        # the worker is one process on one core: its CPU time per event gives the rate it
        # reaches with a core to itself (the wall rate falls with the machine's load)
        figures["worker.cpu_us_per_event"] = round(cpu / len(worker_records) * 1e6, 1)
        figures["worker.events_per_cpu_s"] = round(len(worker_records) / cpu)
        figures["worker.share_of_raw"] = round(
            rate_worker / figures["worker.raw_consume_decode_events_per_s"], 3
        )
    finally:
        delete_topics(bench, [spec.name for spec in specs])
    return figures


class _LiveFlags(threading.Thread):
    """Tails the flag topic while the stream is produced: each flag with the local time it was
    received (ms) and its Kafka timestamp (the worker's producer send time)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.flags: list[tuple[dict[str, Any], int, int]] = []
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        settings = self.settings
        codec = build_codec(settings)
        consumer = Consumer(
            {
                **confluent_config(settings),
                "group.id": f"{settings.worker.app_id}-live-flags",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        topic = settings.topic("security_flag")
        consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.kafka.partitions)]
        )
        self.ready.set()
        try:
            while not self.stop.is_set():
                message = consumer.poll(0.05)
                if message is None or message.error() is not None:
                    continue
                received = int(time.time() * 1000)
                value = message.value()
                if value is not None:
                    record = codec.decode(value).record
                    self.flags.append((record, received, message.timestamp()[1]))
        finally:
            consumer.close()


def _latency(
    settings: Settings, records: list, rate: float, latency_seconds: float
) -> dict[str, Any]:
    """Flag delay with the worker running while events are produced live at ``rate``.

    Clock: the producer send time of each event (its Kafka CreateTime, set by the SDK's
    producer when ``produce`` is called); the delay of a flag is from that of its completing
    event (the last evidence id) to the moment a consumer tailing the flag topic received it
    (``latency.*``; same machine, same clock), and to the flag's own Kafka timestamp (the
    worker's send time: ``latency.worker_send_*``). A warm-up share of the stream is produced
    and processed first, so group join and first-batch costs are not counted.
    """
    figures: dict[str, Any] = {}
    run_id = uuid.uuid4().hex[:8]
    log = Path(f"/tmp/bench-sec-{run_id}.log")
    live = _bench_settings(settings, run_id + "l")
    specs = platform_topics(live)
    ensure_topics(live, specs)
    try:
        count = int(rate * latency_seconds)
        ordered = sorted(records, key=lambda r: r["occurred_at"])
        warmup, timed = ordered[: count // 10], ordered[count // 10 : count]
        reader = _LiveFlags(live)
        with _worker(live, log) as proc:
            _produce(live, warmup, None)
            _wait_processed(live, len(warmup), 120)
            reader.start()
            reader.ready.wait(30)
            cpu_started = cpu_seconds(proc.pid)
            started = time.perf_counter()
            stamps = _produce(live, timed, rate)
            produced_in = time.perf_counter() - started
            _wait_processed(live, len(warmup) + len(timed), 120)
            cpu = cpu_seconds(proc.pid) - cpu_started
            time.sleep(2.0)
            reader.stop.set()
            reader.join(30)
        received, sent = [], []
        for flag, received_ms, sent_ms in reader.flags:
            completing = (flag["evidence_event_ids"] or [None])[-1]
            if completing in stamps:
                received.append(received_ms - stamps[completing])
                sent.append(sent_ms - stamps[completing])
        figures["latency.rate_events_per_s"] = rate
        figures["latency.achieved_rate_events_per_s"] = round(len(timed) / produced_in)
        figures["latency.events"] = len(timed)
        # share of one core the worker used at this rate (1.0: it could not keep up)
        figures["latency.worker_cpu_share"] = round(cpu / produced_in, 2)
        figures["latency.flags"] = len(received)
        figures["latency.p50_ms"] = _percentile(received, 0.5)
        figures["latency.p99_ms"] = _percentile(received, 0.99)
        figures["latency.max_ms"] = max(received) if received else math.nan
        figures["latency.worker_send_p50_ms"] = _percentile(sent, 0.5)
        figures["latency.worker_send_p99_ms"] = _percentile(sent, 0.99)
    finally:
        delete_topics(live, [spec.name for spec in specs])
    return figures
