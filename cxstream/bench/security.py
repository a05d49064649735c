"""``cxstream bench security``: detection quality, worker throughput and flag delay.

Figures:

- ``quality.*``: the detectors (rules + model, default settings) over a simulated stream of a
  seed they were NOT tuned on (option ``seed``, default 4242; tuning used seeds 1 and
  20261207), ``days`` (7) days of ``customers`` (3000) with ``scenarios`` (20) of each type:
  per scenario type recall and precision, false flags per 10,000 benign logins
  (:mod:`processors.security.evaluation`). Run in-process (:class:`MemoryPipeline`), which
  decides exactly like the worker.
- ``engine_events_per_s``: the same detection step in-process (no Kafka), rules + model.
- ``worker.*``: the access events of that stream preloaded into Kafka, then a real
  ``cxstream worker -p security`` subprocess (rules + model on): access events/s from its first
  to its last processed event (group join excluded), against ``raw_consume_decode``:
  confluent-kafka consume + Avro decode of the same topic in the same run.
- ``latency.*``: the worker running while the stream is produced live at ``rate`` (5000)
  events/s: delay from the Kafka timestamp of the event that completes a pattern (the last
  evidence event) to the Kafka timestamp of its flag; p50/p99/max over every flag.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError

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
    started = time.perf_counter()
    flags = pipe.run(events)
    elapsed = time.perf_counter() - started
    figures = evaluate(flags, labels, benign_login_count=benign_logins(records, labelled))
    return {
        **{f"quality.{k}": v for k, v in figures.items()},
        "engine_events_per_s": round(len(records) / elapsed),
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


def _wait_processed(settings: Settings, total: int, timeout: float) -> tuple[float, float]:
    """(time of the first processed event, time all ``total`` were processed)."""
    first = math.nan
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = _stats(settings) or {}
        events = stats.get("events", 0)
        if events and math.isnan(first):
            first = time.perf_counter()
        if events >= total:
            return first, time.perf_counter()
        time.sleep(0.05)
    raise RuntimeError(f"security worker processed fewer than {total} events in {timeout} s")


def _raw_consume_decode(settings: Settings, total: int) -> float:
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
    started = math.nan
    try:
        while seen < total:
            batch = consumer.consume(10_000, 1.0)
            if batch and math.isnan(started):
                started = time.perf_counter()
            for message in batch:
                value = message.value()
                if not message.error() and value is not None:
                    codec.decode(value)
                    seen += 1
        return total / (time.perf_counter() - started)
    finally:
        consumer.close()


def _flags_with_stamps(settings: Settings, timeout: float = 20) -> list[tuple[dict, int]]:
    codec = build_codec(settings)
    consumer = Consumer(
        {
            **confluent_config(settings),
            "group.id": f"{settings.worker.app_id}-flags",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.subscribe([settings.topic("security_flag")])
    out: list[tuple[dict, int]] = []
    eof: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(eof) < settings.kafka.partitions and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error, value = message.error(), message.value()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    eof.add(message.partition() or 0)
                continue
            if value is not None:
                out.append((codec.decode(value).record, message.timestamp()[1]))
    finally:
        consumer.close()
    return out


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
    rate: float = 5000,
    latency_seconds: float = 20,
) -> dict[str, Any]:
    records, labels = simulate(seed, days, customers, scenarios)
    figures: dict[str, Any] = {
        "seed": seed,
        "access_events": len(records),
        "labels": len(labels),
        **quality(settings, records, labels),
        "settings.security": settings.security.model_dump(mode="json"),
    }
    # worker throughput on a preloaded stream
    worker_records, _ = simulate(seed + 1, worker_days, customers, scenarios)
    run_id = uuid.uuid4().hex[:8]
    bench = _bench_settings(settings, run_id)
    specs = platform_topics(bench)
    ensure_topics(bench, specs)
    log = Path(f"/tmp/bench-sec-{run_id}.log")
    try:
        _produce(bench, worker_records, None)
        figures["worker.raw_consume_decode_events_per_s"] = round(
            _raw_consume_decode(bench, len(worker_records))
        )
        with _worker(bench, log):
            first, done = _wait_processed(bench, len(worker_records), 600)
        rate_worker = len(worker_records) / (done - first)
        figures["worker.events"] = len(worker_records)
        figures["worker.events_per_s"] = round(rate_worker)
        figures["worker.share_of_raw"] = round(
            rate_worker / figures["worker.raw_consume_decode_events_per_s"], 3
        )
    finally:
        delete_topics(bench, [spec.name for spec in specs])
    # flag delay with the worker running while events are produced live
    live = _bench_settings(settings, run_id + "l")
    specs = platform_topics(live)
    ensure_topics(live, specs)
    try:
        count = int(rate * latency_seconds)
        live_records = sorted(records, key=lambda r: r["occurred_at"])[:count]
        with _worker(live, log):
            stamps = _produce(live, live_records, rate)
            _wait_processed(live, len(live_records), 120)
            time.sleep(1.0)
        delays = [
            stamp - stamps[flag["evidence_event_ids"][-1]]
            for flag, stamp in _flags_with_stamps(live)
            if flag["evidence_event_ids"] and flag["evidence_event_ids"][-1] in stamps
        ]
        figures["latency.rate_events_per_s"] = rate
        figures["latency.flags"] = len(delays)
        figures["latency.p50_ms"] = _percentile(delays, 0.5)
        figures["latency.p99_ms"] = _percentile(delays, 0.99)
        figures["latency.max_ms"] = max(delays) if delays else math.nan
    finally:
        delete_topics(live, [spec.name for spec in specs])
    return figures
