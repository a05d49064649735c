"""``cxstream bench sla``: the feedback SLA engine (issue 5) against its targets.

Figures:

- ``engine``: in this process, no Kafka: the pure engine (:mod:`processors.sla.engine`) over a
  dict with ``items`` (1,000,000) open items built through ``apply_batch`` (its events/s), the
  memory they take (RSS growth, per million items), the index rebuild time after a restart,
  and the cost of a timer tick while a trickle of ``trickle_per_s`` (500) items per second falls
  due: p50/p99/max per tick of ``tick_ms`` (200 ms) over ``ticks`` (300) ticks, alerts built
  and marked but not sent.
- ``worker``: the real thing, ``cxstream worker --processor sla`` in a subprocess on the local
  Kafka: ``items`` submissions plus ``status_share`` (0.2) of that in status changes are
  preloaded; the worker's rate is from its first to its last applied event (polled on
  ``/v1/stats`` every 0.25 s), against ``raw_consume_decode``: confluent-kafka consume + decode
  of the same topics in the same run. Then, with every item still open, ``trickle`` (3000)
  items are published whose warnings fall due over the next ``trickle_seconds`` (30) s: the
  delay deadline -> alert emitted (``fired_at - deadline_at``) and deadline -> alert in Kafka
  (the alert message's broker timestamp) p50/p99/max, and the worker's RSS per million open
  items. ``events_per_cpu_s`` divides by the worker's CPU time (user + system, all threads),
  the figure to compare when the 2 cores are shared; the raw reference has one too.
  ``worker=false`` skips this part.
- ``producer``: the producer's ceiling for changelog-sized messages: raw aiokafka (``await
  send`` per message, as Faust's producer buffer does) of ``producer_messages`` (100k) SLA item
  values per configuration (linger, batch size, compression, acks), and the same items as
  segments of :data:`~processors.sla.store.SEGMENT_ITEMS` (JSON encoding included).
  ``producer=false`` skips it.
- ``delivery``: :func:`cxstream.bench.sla_delivery.run` (webhook delivery by the notifier to a
  local receiver, ``alerts`` 5000). ``delivery=false`` skips it.

Targets (issue 5): >= 20k feedback events/s per worker; alert fired <= 1 s after its deadline
(p99) with 1 million open items; webhook delivery >= 500 alerts/s.
"""

from __future__ import annotations

import gc
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError

from cxstream.bench.sink import raw_consume_decode
from cxstream.errors import ServiceError
from cxstream.settings import Settings
from processors.sla.engine import STATUS_CHANGED, SUBMITTED, SlaEngine
from processors.sla.lifecycle import Item
from processors.sla.policy import HOUR_MS, SlaPolicy
from processors.sla.store import SEGMENT_ITEMS
from streams.codec import build_codec
from streams.kafka_config import confluent_config
from streams.producer import EventProducer
from streams.topics import (
    admin_client,
    delete_topics,
    describe_topics,
    ensure_topics,
    platform_topics,
)

TARGET_EVENTS_PER_S = 20_000
TARGET_P99_MS = 1000
WARN_MS = round(0.8 * 24 * HOUR_MS)
CXSTREAM = str(Path(sys.executable).with_name("cxstream"))


def _rss_bytes(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ServiceError(f"no VmRSS in /proc/{pid}/status")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ranked = sorted(values)

    def rank(q: float) -> float:
        return round(ranked[max(0, math.ceil(q * len(ranked)) - 1)], 2)

    return {"p50_ms": rank(0.5), "p99_ms": rank(0.99), "max_ms": round(ranked[-1], 2)}


def _submitted(i: int, at: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.UUID(int=(1 << 100) + i)),
        "occurred_at": at,
        "customer_id": f"C{i % 500_000:07d}",
        "feedback_id": f"fb-{i:08d}",
        "channel": ("app", "web", "phone", "branch", "email")[i % 5],
        "category": ("fees", "card", "app_bug", "staff", "waiting_time")[i % 5],
        "severity": ("low", "medium", "high")[i % 3],
        "department": "customer_service",
        "text": None,
        "contact_email": None,
        "contact_phone": None,
        "source": "bench",
    }


def _status(i: int, at: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.UUID(int=(2 << 100) + i)),
        "occurred_at": at,
        "customer_id": f"C{i % 500_000:07d}",
        "feedback_id": f"fb-{i:08d}",
        "status": "acknowledged",
        "department": None,
        "agent_id": None,
        "note": None,
        "source": "bench",
    }


# -- in-process engine ------------------------------------------------------------------------


def engine_figures(
    settings: Settings, items: int, trickle_per_s: int, tick_ms: int, ticks: int
) -> dict[str, Any]:
    policy = SlaPolicy.from_settings(settings)
    store: dict[str, Item] = {}

    def write(partition: int, key: str, value: Item | None) -> None:
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value

    engine = SlaEngine(
        policy, store, write, pseudonymise=lambda v: v[-8:].rjust(16, "x"), link_base_url="x"
    )
    now = int(time.time() * 1000)
    partitions = settings.kafka.partitions
    # the trickle: the first items fall due one after another from `now` on
    due_items = trickle_per_s * ticks * tick_ms // 1000

    def at_of(i: int) -> int:
        return now - WARN_MS + (i * 1000) // trickle_per_s if i < due_items else now

    gc.collect()
    rss_before = _rss_bytes()
    apply_s = 0.0
    apply_cpu_s = 0.0
    for first in range(0, items, 2000):
        # records are built outside the timed part: only apply_batch counts
        batch = [
            (i % partitions, SUBMITTED, _submitted(i, at_of(i)))
            for i in range(first, min(items, first + 2000))
        ]
        started, cpu = time.perf_counter(), time.process_time()
        engine.apply_batch(batch)
        apply_s += time.perf_counter() - started
        apply_cpu_s += time.process_time() - cpu
    gc.collect()
    rss_items = _rss_bytes() - rss_before
    started = time.perf_counter()
    engine.index = type(engine.index)()
    engine.rebuild(range(partitions))
    rebuild_s = time.perf_counter() - started
    costs: list[float] = []
    fired = 0
    for k in range(ticks):
        tick_now = now + (k + 1) * tick_ms
        t0 = time.perf_counter()
        fired += len(engine.tick(tick_now, range(partitions)))
        costs.append((time.perf_counter() - t0) * 1000)
    return {
        "open_items": items,
        "apply_events_per_s": round(items / apply_s),
        "apply_events_per_cpu_s": round(items / apply_cpu_s),
        "memory_bytes_per_item": round(rss_items / items),
        "memory_mib_per_million_items": round(rss_items / items * 1e6 / 2**20, 1),
        "index_rebuild_s": round(rebuild_s, 2),
        "tick_interval_ms": tick_ms,
        "trickle_per_s": trickle_per_s,
        "alerts_per_tick": round(fired / ticks, 1),
        "tick_cost": _percentiles(costs),
    }


# -- producer ceiling -------------------------------------------------------------------------

#: aiokafka producer variants measured by ``producer_figures`` (Faust's is the first)
PRODUCER_VARIANTS: dict[str, dict[str, Any]] = {
    # what create_app configures today (Faust's linger 0 and 16 KiB batches, our zstd)
    "faust_now_zstd": {"linger_ms": 0, "max_batch_size": 16384, "compression_type": "zstd"},
    "none": {"linger_ms": 0, "max_batch_size": 16384, "compression_type": None},
    "lz4": {"linger_ms": 0, "max_batch_size": 16384, "compression_type": "lz4"},
    "linger5_batch1m_none": {
        "linger_ms": 5,
        "max_batch_size": 1 << 20,
        "compression_type": None,
    },
    "linger5_batch1m_zstd": {
        "linger_ms": 5,
        "max_batch_size": 1 << 20,
        "compression_type": "zstd",
    },
    "linger5_batch1m_none_acks1": {
        "linger_ms": 5,
        "max_batch_size": 1 << 20,
        "compression_type": None,
        "acks": 1,
    },
}


async def _produce_rate(
    settings: Settings, topic: str, messages: list[tuple[bytes, bytes]], **config: Any
) -> float:
    """Messages/s of ``await producer.send`` per message (as Faust's buffer does), until acked."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers.split(","),
        acks=config.pop("acks", -1),
        max_request_size=2 << 20,
        **config,
    )
    await producer.start()
    try:
        partitions = settings.kafka.partitions
        started = time.perf_counter()
        futures = [
            await producer.send(topic, value, key=key, partition=i % partitions)
            for i, (key, value) in enumerate(messages)
        ]
        await producer.flush()
        elapsed = time.perf_counter() - started
        for future in futures:
            future.result()  # raises if any was not acknowledged
    finally:
        await producer.stop()
    return len(messages) / elapsed


def producer_figures(settings: Settings, messages: int, segment_items: int) -> dict[str, Any]:
    """The ceiling of the worker's producer for changelog-sized messages, per configuration.

    Values are SLA item values as the table writes them (JSON, ~170 B). ``segment`` sends the
    same items ``segment_items`` to a message (the processor's segment layout), JSON encoding
    included, as items/s.
    """
    import asyncio

    from streams.topics import TopicSpec

    topic = f"{settings.kafka.topic_prefix}-bench-sla-producer-{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, [TopicSpec(topic, settings.kafka.partitions)])
    now = int(time.time() * 1000)
    items = []
    for i in range(messages):
        record = _submitted(i, now)
        item = {
            "p": i % 4,
            "c": record["customer_id"],
            "sub": [
                now,
                record["channel"],
                record["category"],
                record["severity"],
                record["department"],
                record["event_id"],
            ],
            "ev": [],
            "f": [],
            "t": now,
        }
        items.append((record["feedback_id"], item))
    small = [(json.dumps(k).encode(), json.dumps(v).encode()) for k, v in items]
    out: dict[str, Any] = {
        "messages": messages,
        "value_bytes": round(sum(len(v) for _, v in small) / messages),
    }
    try:
        for name, config in PRODUCER_VARIANTS.items():
            rate = asyncio.run(_produce_rate(settings, topic, small, **dict(config)))
            out[f"{name}_msgs_per_s"] = round(rate)
        started = time.perf_counter()
        segments = [
            (
                f"0:{n}".encode(),
                json.dumps({"i": dict(items[first : first + segment_items])}).encode(),
            )
            for n, first in enumerate(range(0, messages, segment_items))
        ]
        encode_s = time.perf_counter() - started
        rate = asyncio.run(
            _produce_rate(settings, topic, segments, **dict(PRODUCER_VARIANTS["none"]))
        )
        out["segment_items"] = segment_items
        out["segment_items_per_s"] = round(messages / (encode_s + len(segments) / rate))
    finally:
        delete_topics(settings, [topic])
    return out


# -- real worker ------------------------------------------------------------------------------


def _bench_settings(settings: Settings, run_id: str) -> Settings:
    return settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(
                update={"topic_prefix": f"{settings.kafka.topic_prefix}-bench-sla-{run_id}"}
            ),
            "worker": settings.worker.model_copy(
                update={"app_id": f"bench-sla-{run_id}", "web_port": _free_port()}
            ),
        }
    )


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _worker_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CX_")}
    env.update(
        {
            "CX_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "CX_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
            "CX_KAFKA__PARTITIONS": str(settings.kafka.partitions),
            "CX_WORKER__APP_ID": settings.worker.app_id,
            "CX_WORKER__WEB_PORT": str(settings.worker.web_port),
            "CX_WORKER__DATA_DIR": str(settings.worker.data_dir),
            "CX_LOG_LEVEL": "WARNING",
        }
    )
    return env


def _sla_stats(settings: Settings) -> dict[str, Any] | None:
    url = f"http://127.0.0.1:{settings.worker.web_port}/v1/stats"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            data: dict[str, Any] = json.load(response)["sla"]
            return data
    except OSError:
        return None


def _wait(what: str, timeout: float, condition: Any, proc: subprocess.Popen[bytes]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"bench sla: worker exited {proc.returncode} waiting for {what}")
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise ServiceError(f"bench sla: timed out after {timeout} s waiting for {what}")


def _produce(settings: Settings, events: list[tuple[str, dict[str, Any]]]) -> None:
    with EventProducer(settings, build_codec(settings)) as producer:
        for name, record in events:
            producer.produce(name, record)
        producer.flush(120)


def _read_alerts(settings: Settings, count: int, timeout: float) -> list[tuple[dict, int]]:
    codec = build_codec(settings)
    consumer = Consumer(
        confluent_config(
            settings,
            **{
                "group.id": f"bench-sla-alerts-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
            },
        )
    )
    consumer.subscribe([settings.topic("alert")])
    out: list[tuple[dict, int]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise ServiceError(f"bench sla: reading alerts: {error}")
                    continue
                value = message.value() or b""
                out.append((codec.decode(value).record, message.timestamp()[1]))
    finally:
        consumer.close()
    return out


def worker_figures(settings: Settings, options: dict[str, Any]) -> dict[str, Any]:
    items = int(options.get("items", 1_000_000))
    statuses = int(items * float(options.get("status_share", 0.2)))
    trickle = int(options.get("trickle", 3000))
    trickle_s = float(options.get("trickle_seconds", 30))
    run_id = uuid.uuid4().hex[:8]
    settings = _bench_settings(settings, run_id)
    specs = platform_topics(settings)
    ensure_topics(settings, specs)
    proc: subprocess.Popen[bytes] | None = None
    log = Path(f"/tmp/bench-sla-{run_id}.log")
    try:
        now = int(time.time() * 1000)
        events = [(SUBMITTED, _submitted(i, now)) for i in range(items)]
        events += [(STATUS_CHANGED, _status(i, now + 1000)) for i in range(statuses)]
        _produce(settings, events)
        total = len(events)
        del events
        raw_cpu = time.process_time()
        raw_sub = raw_consume_decode(settings, settings.topic(SUBMITTED), items)
        raw_st = raw_consume_decode(settings, settings.topic(STATUS_CHANGED), statuses)
        raw_cpu = time.process_time() - raw_cpu
        raw = total / (items / raw_sub + statuses / raw_st) if statuses else raw_sub
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [CXSTREAM, "worker", "--processor", "sla", "--no-ensure-topics"],
                env=_worker_env(settings),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        rss_start = _wait(
            "web view", 90, lambda: _sla_stats(settings) and _rss_bytes(proc.pid), proc
        )
        first_t = 0.0
        first_n = 0
        last_t = 0.0
        first_cpu = last_cpu = 0.0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            stats = _sla_stats(settings) or {}
            applied = stats.get("applied", 0) + stats.get("duplicates", 0)
            t = time.perf_counter()
            if applied and not first_t:
                first_t, first_n, first_cpu = t, applied, _cpu_seconds(proc.pid)
            if applied >= total:
                last_t, last_cpu = t, _cpu_seconds(proc.pid)
                break
            if proc.poll() is not None:
                raise ServiceError(f"bench sla: worker exited {proc.returncode}; log {log}")
            time.sleep(0.25)
        if not last_t:
            raise ServiceError(f"bench sla: worker applied {applied} of {total}; log {log}")
        rate = (total - first_n) / (last_t - first_t) if last_t > first_t else float("nan")
        # the 2 cores are shared: CPU time says what one worker does with a core of its own
        cpu_rate = (total - first_n) / (last_cpu - first_cpu) if last_cpu > first_cpu else 0.0
        rss_loaded = _rss_bytes(proc.pid)
        # the trickle: items whose warnings fall due over the next trickle_s seconds
        t0 = int(time.time() * 1000) + 2000
        spacing = trickle_s * 1000 / trickle
        trickle_events = [
            (SUBMITTED, _submitted(items + j, t0 + round(j * spacing) - WARN_MS))
            for j in range(trickle)
        ]
        _produce(settings, trickle_events)
        alerts = _read_alerts(settings, trickle, timeout=trickle_s + 60)
        stats = _sla_stats(settings) or {}
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        own = [n for n in describe_topics(admin_client(settings)) if n.startswith(run_id)]
        own += [n for n in describe_topics(admin_client(settings)) if "bench-sla-" + run_id in n]
        delete_topics(settings, [spec.name for spec in specs] + sorted(set(own)))
    emitted = [a["fired_at"] - a["deadline_at"] for a, _ in alerts]
    in_kafka = [ts - a["deadline_at"] for a, ts in alerts]
    p99 = _percentiles(emitted)["p99_ms"]
    return {
        "events": total,
        "open_items": items + trickle,
        "events_per_s": round(rate),
        "events_per_cpu_s": round(cpu_rate),
        "raw_consume_decode_events_per_s": round(raw),
        "raw_consume_decode_events_per_cpu_s": round(total / raw_cpu) if raw_cpu else None,
        "worker_vs_raw": round(rate / raw, 3),
        "worker_rss_mib_per_million_items": round(
            (rss_loaded - rss_start) / items * 1e6 / 2**20, 1
        ),
        "trickle_alerts": len(alerts),
        "trickle_alerts_expected": trickle,
        "deadline_to_emitted": _percentiles(emitted),
        "deadline_to_in_kafka": _percentiles(in_kafka),
        "worker_tick_seconds_max": stats.get("tick_seconds_max"),
        "met_events_per_s": rate >= TARGET_EVENTS_PER_S,
        "met_p99": p99 is not None and p99 <= TARGET_P99_MS and len(alerts) == trickle,
    }


def _enabled(options: dict[str, Any], part: str) -> bool:
    return options.get(part, True) not in (False, "false", 0)


def run(settings: Settings, **options: Any) -> dict[str, Any]:
    items = int(options.get("items", 1_000_000))
    random.seed(7)
    figures: dict[str, Any] = {
        "engine": engine_figures(
            settings,
            items,
            int(options.get("trickle_per_s", 500)),
            int(options.get("tick_ms", 200)),
            int(options.get("ticks", 300)),
        )
    }
    gc.collect()
    if _enabled(options, "producer"):
        figures["producer"] = producer_figures(
            settings, int(options.get("producer_messages", 100_000)), SEGMENT_ITEMS
        )
    if _enabled(options, "worker"):
        figures["worker"] = worker_figures(settings, options)
    if _enabled(options, "delivery"):
        from cxstream.bench import sla_delivery

        figures["delivery"] = sla_delivery.run(settings, alerts=int(options.get("alerts", 5000)))
    figures["targets"] = {
        "events_per_s": TARGET_EVENTS_PER_S,
        "deadline_to_alert_p99_ms": TARGET_P99_MS,
    }
    figures["settings"] = {
        "partitions": settings.kafka.partitions,
        "tick_interval_seconds": settings.sla.tick_interval_seconds,
        "batch_size": settings.worker.batch_size,
        "store": settings.worker.store,
        "response_hours": settings.sla.response_hours,
    }
    return figures
