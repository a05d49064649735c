"""``cxstream bench profiles``: live profiles' throughput, Redis visibility and memory.

Figures:

- ``worker_events_per_s``: one ``cxstream worker -p profiles`` process (Redis mirror and
  snapshots on) working off ``events`` preloaded simulated events of every customer topic, from
  its first applied batch to the last (start-up and group join excluded); against
  ``raw_consume_decode_per_s``, confluent-kafka consume + decode of the same topics in the same
  run, and their ratio; ``worker_cpu_us_per_event`` is the worker process's CPU time (user +
  sys, all threads) over the same span per event, and ``worker_events_per_cpu_s`` its inverse:
  the rate one free core would reach, less sensitive to other work on a shared machine;
  ``worker_second_half_*`` the same over the run's second half only: past the simulation's
  start-up (every customer's registration and holdings, a first event each: cache miss, new
  profile, full Redis write), the steady mix of interactions, logins, transactions and
  feedback, which publishes more per event;
- ``latency_*``: produce -> visible in Redis at ``rate`` events/s for ``seconds`` of traffic
  like the throughput run's second half (its events cycled, restamped), with probe events of fresh
  customers, one per ``probe_every``; "visible" = Redis's keyspace notification of the first
  write of the probe's hash; the load is encoded before the clock starts;
  ``latency_new_customers_*`` the same where nearly every event is a new customer's first
  (customers drawn from a million: a full profile published per event, the worst case);
- ``memory_*``: the profile table's in-memory state per customer, with ``customers`` (1M)
  profiles: values are JSON bytes (that is what the memory store and RocksDB hold), so
  ``memory_serialized_bytes_per_customer`` is the mean value size and
  ``memory_tracemalloc_bytes_per_customer`` the Python heap of a dict of 1M keys + values
  (profiles folded from ``memory_history_days`` of simulated traffic, replicated to 1M keys);
  ``memory_cache_bytes_per_state`` is the heap of one *decoded* state, what the engine's cache
  (``profiles.cache_states`` of them at most, ``memory_cache_limit``) adds per cached customer;
- ``*_redis_aof_rewrites``: AOF rewrites Redis began during each latency phase (each forks a
  child that competes with the worker for a shared machine's cores);
- ``load_average_*``: the machine's 1-minute load average before and after the throughput run
  (other work on a shared machine slows the wall-clock figures; the per-CPU-second ones less).

Options: ``events`` (200000), ``rate`` (10000), ``seconds`` (15), ``probe_every`` (20),
``customers`` (1000000), ``memory_sample`` (2000), ``memory_history_days`` (30).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError

from cxstream.bench.cleanup import delete_redis_prefix
from cxstream.errors import ServiceError
from cxstream.settings import Settings, section_environment
from cxstream.simulate.config import DAY_MS, SimulationConfig
from cxstream.simulate.traffic import generate
from processors.profiles.engine import ProfileEngine, decode_state, encode_state
from processors.profiles.fold import PROFILE_EVENTS
from streams.batching import InputEvent
from streams.codec import build_codec
from streams.kafka_config import confluent_config
from streams.producer import EventProducer, partition_key
from streams.topics import delete_topics, ensure_topics, platform_topics

START = 1_780_000_000_000
CXSTREAM = str(Path(sys.executable).with_name("cxstream"))


def run(
    settings: Settings,
    events: int = 200_000,
    rate: int = 10_000,
    seconds: float = 15.0,
    probe_every: int = 20,
    customers: int = 1_000_000,
    memory_sample: int = 2000,
    memory_history_days: float = 30.0,
    **_: Any,
) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    scoped = _scoped(settings, run_id)
    specs = platform_topics(scoped)
    ensure_topics(scoped, specs)
    figures: dict[str, Any] = {
        "events": events,
        "partitions": scoped.kafka.partitions,
        "store": scoped.worker.store,
        "dedupe_window_seconds": scoped.worker.dedupe_window_seconds,
        "publish_interval_ms": scoped.profiles.publish_interval_ms,
        "cache_states": scoped.profiles.cache_states,
        "gc_thresholds": list(scoped.worker.gc_thresholds),
        "gc_between_batches": scoped.worker.gc_between_batches,
        "gc_backstop_threshold": scoped.worker.gc_backstop_threshold,
        "gc_thaw_seconds": scoped.worker.gc_thaw_seconds,
        "fetch_max_wait_ms": scoped.worker.fetch_max_wait_ms,
        "fetch_min_bytes": scoped.worker.fetch_min_bytes,
    }
    try:
        stream = _simulated(events)
        _publish(scoped, stream)
        figures["raw_consume_decode_per_s"] = round(_raw_rate(scoped, len(stream)))
        worker = _Worker(scoped, run_id)
        try:
            figures["load_average_before"] = os.getloadavg()[0]
            whole, second_half = worker.rate(len(stream))
            figures["load_average_after"] = os.getloadavg()[0]
            figures.update(whole.figures("worker"))
            figures.update(second_half.figures("worker_second_half"))
            figures["worker_stats"] = _compact_stats(worker.stats())
            # traffic like the throughput run's second half (its customers, every event type;
            # the first half starts with the simulation's registrations and holdings), then
            # the worst case: every event the first of a new customer (a full profile each)
            steady = stream[len(stream) // 2 :]
            mixed = _latency_load(scoped, int(rate * seconds), probe_every, steady)
            figures.update(_latency(scoped, mixed, rate, seconds, "latency"))
            fresh = _latency_load(scoped, int(rate * seconds), probe_every, None)
            figures.update(_latency(scoped, fresh, rate, seconds, "latency_new_customers"))
        finally:
            worker.stop()
        raw = figures["raw_consume_decode_per_s"]
        figures["worker_to_raw_ratio"] = round(figures["worker_events_per_s"] / raw, 3)
        figures["worker_second_half_to_raw_ratio"] = round(
            figures["worker_second_half_events_per_s"] / raw, 3
        )
    finally:
        delete_topics(scoped, [s.name for s in specs] + _own_topics(scoped))
        delete_redis_prefix(scoped, scoped.kafka.topic_prefix)
    figures.update(_memory(customers, memory_sample, memory_history_days))
    figures["memory_cache_limit"] = settings.profiles.cache_states
    figures["targets"] = "worker >= 30000 ev/s; p99 <= 250 ms; <= 2048 B/customer"
    return figures


def _scoped(settings: Settings, run_id: str) -> Settings:
    return settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"topic_prefix": f"bench-prof-{run_id}"}),
            "worker": settings.worker.model_copy(
                update={
                    "app_id": f"bench-prof-{run_id}",
                    "data_dir": Path(f"/tmp/bench-profiles-{run_id}"),
                }
            ),
        }
    )


def _own_topics(settings: Settings) -> list[str]:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(confluent_config(settings))
    return [t for t in admin.list_topics(timeout=10).topics if t.startswith(settings.worker.app_id)]


def _simulated(count: int) -> list[tuple[str, dict[str, Any]]]:
    config = SimulationConfig(start_ms=START, duration_ms=None, max_events=count, customers=20_000)
    return [(e.name, e.record) for e in generate(config) if e.name in PROFILE_EVENTS]


def _publish(settings: Settings, stream: list[tuple[str, dict[str, Any]]]) -> None:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for name, record in stream:
        by_name.setdefault(name, []).append(record)
    with EventProducer(settings, build_codec(settings)) as producer:
        for name, records in by_name.items():
            producer.produce_many(name, records)
        producer.flush(60)


def _raw_rate(settings: Settings, count: int) -> float:
    """confluent-kafka consume + decode of every customer topic: the raw reference."""
    codec = build_codec(settings)
    consumer = Consumer(
        confluent_config(
            settings,
            **{
                "group.id": f"raw-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            },
        )
    )
    consumer.subscribe([settings.topic(name) for name in PROFILE_EVENTS])
    seen, first = 0, 0.0
    deadline = time.monotonic() + 180
    try:
        while seen < count:
            if time.monotonic() > deadline:
                raise ServiceError(f"bench profiles: raw consumer read {seen} of {count}")
            for message in consumer.consume(num_messages=10_000, timeout=1.0):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise ServiceError(f"bench profiles: raw consumer: {error}")
                    continue
                if not seen:
                    first = time.perf_counter()
                codec.decode(message.value())  # type: ignore[arg-type]
                seen += 1
        return count / (time.perf_counter() - first)
    finally:
        consumer.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class _Span:
    """Two samples of (perf_counter, events applied, worker CPU seconds)."""

    start: tuple[float, int, float]
    end: tuple[float, int, float]

    def figures(self, prefix: str) -> dict[str, Any]:
        seconds = self.end[0] - self.start[0]
        events = self.end[1] - self.start[1]
        cpu = self.end[2] - self.start[2]
        return {
            f"{prefix}_events_per_s": round(events / seconds),
            f"{prefix}_cpu_us_per_event": round(cpu / events * 1e6, 1),
            f"{prefix}_events_per_cpu_s": round(events / cpu),
        }


class _Worker:
    """A ``cxstream worker -p profiles`` subprocess and its stats."""

    def __init__(self, settings: Settings, run_id: str) -> None:
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CX_")}
        env.update(
            {
                "CX_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
                "CX_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
                "CX_KAFKA__PARTITIONS": str(settings.kafka.partitions),
                "CX_WORKER__APP_ID": settings.worker.app_id,
                "CX_WORKER__WEB_PORT": str(self.port),
                "CX_WORKER__DATA_DIR": str(settings.worker.data_dir),
                "CX_WORKER__STORE": settings.worker.store,
                "CX_WORKER__GC_THRESHOLDS": json.dumps(settings.worker.gc_thresholds),
                "CX_WORKER__GC_BETWEEN_BATCHES": str(settings.worker.gc_between_batches),
                "CX_WORKER__GC_BACKSTOP_THRESHOLD": str(settings.worker.gc_backstop_threshold),
                "CX_WORKER__GC_THAW_SECONDS": str(settings.worker.gc_thaw_seconds),
                "CX_WORKER__FETCH_MAX_WAIT_MS": str(settings.worker.fetch_max_wait_ms),
                "CX_WORKER__FETCH_MIN_BYTES": str(settings.worker.fetch_min_bytes),
                "CX_PROFILES__PUBLISH_INTERVAL_MS": str(settings.profiles.publish_interval_ms),
                "CX_PROFILES__CACHE_STATES": str(settings.profiles.cache_states),
                "CX_LOG_LEVEL": "WARNING",
                **section_environment(settings, "redis"),
            }
        )
        self.log = Path(f"/tmp/bench-profiles-{run_id}.log")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [CXSTREAM, "worker", "-p", "profiles", "--no-ensure-topics"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stats(self) -> dict[str, Any] | None:
        try:
            url = f"http://127.0.0.1:{self.port}/v1/stats"
            with urllib.request.urlopen(url, timeout=5) as response:
                data: dict[str, Any] = json.load(response)["profiles"]
                return data
        except OSError:
            return None

    def cpu_seconds(self) -> float:
        """User + system CPU time of the worker process so far (all its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rate(self, count: int) -> tuple[_Span, _Span]:
        """The whole run (first applied batch to the last event) and its second half.

        The first half is mostly the simulation's start-up (registrations and holdings, every
        customer's first events); the second half is steady traffic.
        """
        first: tuple[float, int, float] | None = None
        half: tuple[float, int, float] | None = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError(f"bench profiles: worker exited; log {self.log}")
            stats = self.stats()
            done = 0 if stats is None else stats["events"]
            now = time.perf_counter()
            if done and first is None:
                first = (now, done, self.cpu_seconds())
            if done >= count / 2 and half is None and first is not None:
                half = (now, done, self.cpu_seconds())
            if done >= count and first is not None and half is not None:
                end = (now, done, self.cpu_seconds())
                return _Span(first, end), _Span(half, end)
            time.sleep(0.05)
        raise ServiceError(f"bench profiles: worker did not finish {count} events; {self.log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _compact_stats(stats: dict[str, Any] | None) -> str:
    """The worker's counters after the throughput run (publications vs events: coalescing)."""
    if stats is None:
        return "unavailable"
    mirror = stats.get("mirror", {})
    cache = stats.get("cache", {})
    return (
        f"events {stats['events']}, publications {stats['publications']}, flushes "
        f"{stats['flushes']}, redis full writes {mirror.get('full_writes')}, fields written "
        f"{mirror.get('fields_written')}, waited for redis {mirror.get('drain_wait_seconds')} s, "
        f"cache hits {cache.get('hits')} misses "
        f"{cache.get('misses')}, changelog writes {stats.get('changelog', {}).get('sent')}"
    )


def _latency(
    settings: Settings, load: list[_Send], rate: int, seconds: float, prefix: str
) -> dict[str, Any]:
    """p50/p99 produce -> visible in Redis while ``rate`` events/s are produced.

    "Visible" is the moment Redis announces the probe's first hash write (a keyspace
    notification, enabled for the run and restored after): polling thousands of keys every few
    milliseconds cost the worker a third of a core once it lagged, which made it lag more.
    """
    from cxstream.bench.sink import _percentiles
    from cxstream.redis_connection import sync_redis
    from processors.profiles.mirror import profile_key

    probes = sum(1 for *_, probe in load if probe is not None)
    sent: dict[str, float] = {}
    lock = threading.Lock()

    def produce() -> None:
        # encoded before timing: the load generator's own Avro encoding took half a core
        # from the worker it measures (frontends produce from their own machines)
        with EventProducer(settings, build_codec(settings)) as producer:
            topic, value, key, event_id, probe = load[0]  # connected before the clock
            producer.produce_encoded(topic, value, key=key, event_id=event_id)
            producer.flush(30)
            start = time.perf_counter()
            for i, (topic, value, key, event_id, probe) in enumerate(load[1:]):
                if probe is not None:
                    with lock:
                        sent[probe] = time.perf_counter()
                producer.produce_encoded(topic, value, key=key, event_id=event_id)
                ahead = start + (i + 1) / rate - time.perf_counter()
                if ahead > 0.001:
                    time.sleep(ahead)
            producer.flush(30)

    redis = sync_redis(settings, timeout=None)
    setting = "notify-keyspace-events"
    previous = str(redis.config_get(setting).get(setting, ""))
    redis.config_set(setting, "".join(sorted(set(previous) | {"K", "h"})))
    database = redis.connection_pool.connection_kwargs.get("db", 0)
    channel = f"__keyspace@{database}__:{profile_key(settings, '')}"
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    seen: dict[str, float] = {}
    # Redis forks a child per AOF rewrite, which competes with the worker for these cores
    rewrites_before = _aof_rewrites(redis)
    try:
        pubsub.psubscribe(f"{channel}PROBE*")
        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        deadline = time.monotonic() + seconds + 60
        while len(seen) < probes and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message is None:
                continue
            cid = message["channel"][len(channel) :].decode()
            if cid not in seen:
                seen[cid] = time.perf_counter()
        thread.join(timeout=30)
        rewrites = _aof_rewrites(redis) - rewrites_before
    finally:
        pubsub.close()
        redis.config_set(setting, previous)
        redis.close()
    with lock:
        delays = [seen[cid] - sent[cid] for cid in seen if cid in sent]
        windows = _by_window({sent[cid]: seen[cid] - sent[cid] for cid in seen if cid in sent})
    figures: dict[str, Any] = {f"{prefix}_{k}": v for k, v in _percentiles(delays).items()}
    # where in the run the tail is (a start-up stall and a steady tail call for different fixes)
    figures[f"{prefix}_p99_by_{_WINDOW_S:g}s_ms"] = [_percentiles(w)["p99_ms"] for w in windows]
    lost = probes - len(seen)
    figures.update({f"{prefix}_rate": rate, f"{prefix}_probes": len(sent), f"{prefix}_lost": lost})
    figures[f"{prefix}_redis_aof_rewrites"] = rewrites
    return figures


def _aof_rewrites(redis: Any) -> int:
    """AOF rewrites Redis started so far (counted at the fork; 0 where INFO does not say)."""
    return int(redis.info("persistence").get("aof_rewrites", 0))


_WINDOW_S = 3.0


def _by_window(delay_at_send: dict[float, float]) -> list[list[float]]:
    """Delays grouped by when their probe was sent, in ``_WINDOW_S`` windows from the first."""
    if not delay_at_send:
        return []
    first = min(delay_at_send)
    windows: list[list[float]] = []
    for sent_at, delay in sorted(delay_at_send.items()):
        index = int((sent_at - first) // _WINDOW_S)
        while len(windows) <= index:
            windows.append([])
        windows[index].append(delay)
    return windows


#: one send of a latency run: topic, value, key, event id, probe customer (or None)
_Send = tuple[str, bytes, str, str, str | None]


def _latency_load(
    settings: Settings,
    total: int,
    probe_every: int,
    stream: list[tuple[str, dict[str, Any]]] | None,
) -> list[_Send]:
    """``total`` + 1 sends (the first warms the producer up), encoded before timing.

    Events are ``stream``'s, cycled (fresh event ids, ``occurred_at`` from now on), or with
    ``stream`` None channel interactions of customers drawn from a million, so nearly every
    one is a customer's first. Every ``probe_every``-th send is a probe instead: the first
    event of a fresh customer, whose Redis hash appears when the worker has published it.
    """
    from cxstream.bench.produce import sample_events

    codec = build_codec(settings)
    keys: dict[str, tuple[str, ...]] = {}
    source = stream or [("channel_interaction", r) for r in sample_events(50_000, seed=5)]
    probe_template = next(
        (r for name, r in source if name == "channel_interaction"),
        sample_events(1, seed=5)[0],  # a stream without interactions still gets probes
    )
    now_ms = int(time.time() * 1000)
    load: list[_Send] = []
    for i in range(total + 1):
        probe = None
        if i and i % probe_every == 0:
            name, record = "channel_interaction", dict(probe_template)
            probe = record["customer_id"] = f"PROBE{i:09d}"
            record["anonymous_id"] = None
        else:
            name, template = source[i % len(source)]
            record = dict(template)
        record["event_id"] = event_id = str(uuid.uuid4())
        record["occurred_at"] = now_ms + i // 10
        if name not in keys:
            keys[name] = codec.registry.latest(name).partition_key
        key = partition_key(name, keys[name], record)
        load.append((settings.topic(name), codec.encode(name, record), key, event_id, probe))
    return load


class _Table(dict[Any, Any]):
    def on_recover(self, callback: Any) -> None:
        pass


def _memory(customers: int, sample: int, history_days: float) -> dict[str, Any]:
    """Per-customer size of the table state (JSON values), sampled profiles replicated to N."""
    from streams.batching import SeenEvents

    config = SimulationConfig(
        start_ms=START, duration_ms=int(history_days * DAY_MS), customers=sample
    )
    profiles: dict[bytes, bytes] = {}
    engine = ProfileEngine(profiles, {}, SeenEvents(_Table(), 1))
    offsets: dict[str, int] = {}
    folded = 0
    for event in generate(config):
        if event.name not in PROFILE_EVENTS:
            continue
        offset = offsets[event.name] = offsets.get(event.name, -1) + 1
        item = InputEvent(event.name, event.record, 0, None, "", 0, offset, 0, None)
        for cid, state in engine.apply(event.name, [item]).changed.items():
            profiles[cid.encode()] = encode_state(state)
        folded += 1
    values = list(profiles.values())
    serialized = sum(map(len, values)) / len(values)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    table = {
        f"C{i:09d}".encode(): bytes(memoryview(values[i % len(values)])) for i in range(customers)
    }
    used = tracemalloc.get_traced_memory()[0] - base
    del table
    # the engine's cache holds decoded states: their heap, per state
    base = tracemalloc.get_traced_memory()[0]
    decoded = [decode_state(value) for value in values]
    cached = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del decoded
    return {
        "memory_customers": customers,
        "memory_history_days": history_days,
        "memory_sample_customers": len(values),
        "memory_sample_events_per_customer": round(folded / len(values), 1),
        "memory_serialized_bytes_per_customer": round(serialized),
        "memory_serialized_max_bytes": max(map(len, values)),
        "memory_tracemalloc_bytes_per_customer": round(used / customers),
        "memory_cache_bytes_per_state": round(cached / len(values)),
    }
