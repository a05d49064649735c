"""``cxstream bench pipeline``: the whole platform on one machine, against its raw limit.

One run, the same events for every figure: ``events`` simulated events (``customers``
customers, seed ``seed``; event times shifted to end a minute ago, so no SLA clock is overdue)
are generated once and published once to fresh topics; every consumer below reads those topics
from the beginning with its own group. Figures:

- ``raw``: confluent-kafka consume + Avro decode of every input topic (the most any consumer
  can do here), from the first message to the last.
- ``naive``: ``cxstream worker -p processors.naive_profiles`` (one plain Faust agent, one
  event at a time: decode, fold, table write) on the first ``naive_events`` of the same
  events, from its first event to the last (its ``/v1/stats``).
- ``pipeline``: ``cxstream worker`` with every processor of ``processors.PROCESSORS`` plus
  ``cxstream sink`` (own database), ``cxstream notify serve`` and an on-call receiver: events/s
  of the worker from its group's first commit to its committed lag on the input topics
  reaching 0 (:class:`~cxstream.bench.pipeline_stats.LagRate`), per CPU second of the worker,
  its RSS, and ratios to ``raw`` and ``naive``.
- ``live``: with that platform still running, :func:`cxstream.bench.pipeline_live.live_figures`
  (``rate`` events/s for ``duration`` s): p50/p99 produce -> profile in Redis, produce -> row
  queryable in ClickHouse, deadline -> alert fired and -> received by on-call, completing
  event -> security flag. ``live=false`` skips it.
- ``two_workers``: two ``cxstream worker`` processes in one new group (plus a sink with its own
  group and database) on the same topics (which by then also hold the live part's events):
  events/s of the group, per worker, and against ``pipeline``. Broker, ClickHouse, Redis and
  the sink share the same 2 cores, so this shows contention more than scale-out.
  ``two_workers=false`` skips it.
- ``memory``: in this process, reused from the feature benches: ``cxstream.bench.profiles.
  _memory`` (profile table per customer: serialized JSON and tracemalloc of ``memory_customers``
  keys) and ``cxstream.bench.sla.engine_figures`` (RSS growth of ``memory_items`` open feedback
  items in the SLA engine), both scaled to per million. ``memory=false`` skips it.

Options (``--opt KEY=VALUE``): ``events`` (200000), ``customers`` (20000), ``seed`` (8),
``naive_events`` (50000), ``timeout`` per catch-up (120 + events/500 s; a group that does not
catch up fails its part only, with the partitions behind), ``live``/``two_workers``/``memory``
(true), ``profile`` (false: py-spy over the worker's catch-up, CPU per event by processor and
shared machinery, :mod:`cxstream.bench.pipeline_profile`), the live part's ``rate`` (1000),
``duration`` (60), ``sample_every`` (50), ``sla_items`` (200), ``bursts`` (20),
``drain_seconds`` (60), ``redis_poll_ms`` (20), ``clickhouse_poll_ms`` (100), and
``memory_customers`` / ``memory_items`` (1000000), ``memory_sample`` (1000),
``memory_history_days`` (7).

Targets (issue 8): pipeline >= 25 % of raw and >= 10x naive. Smoke run (< 2 min):
``--opt events=20000 --opt naive_events=10000 --opt rate=1000 --opt duration=10
--opt memory_customers=100000 --opt memory_items=100000 --opt memory_history_days=3``.
Everything the run created is removed at the end, also after a failure or Ctrl-C; the
children's logs stay in /tmp/bench-pipeline-<run id>/logs.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxstream.bench.pipeline_procs import Children, GroupLag, Run, Worker, cpu_seconds, rss_bytes
from cxstream.bench.pipeline_profile import Sampler
from cxstream.bench.pipeline_profile import figures as profile_figures
from cxstream.bench.pipeline_stats import LagRate, ratio
from cxstream.errors import ServiceError
from cxstream.settings import Settings

TARGET_VS_RAW = 0.25
TARGET_VS_NAIVE = 10.0
Events = list[tuple[str, dict[str, Any]]]


def _on(options: dict[str, Any], part: str, *, default: bool = True) -> bool:
    return options.get(part, default) not in (False, "false", 0, "0")


@dataclass
class Profiling:
    """py-spy over the worker from its first commit (``profile=true``) to its catch-up."""

    pid: int
    path: Path
    sampler: Sampler | None = None

    def start(self) -> None:
        self.sampler = Sampler(self.pid, self.path)


def simulated(events: int, customers: int, seed: int) -> Events:
    """``events`` simulated input events in publish order, event times ending a minute ago."""
    from cxstream.simulate.config import SimulationConfig
    from cxstream.simulate.traffic import generate
    from streams.topics import INPUT_EVENTS

    config = SimulationConfig(
        start_ms=1_780_000_000_000, duration_ms=None, max_events=events, customers=customers,
        seed=seed,
    )  # fmt: skip
    stream = [(e.name, e.record) for e in generate(config) if e.name in INPUT_EVENTS]
    shift = int(time.time() * 1000) - 60_000 - max(r["occurred_at"] for _, r in stream)
    for _, record in stream:
        record["occurred_at"] += shift
    return stream


def publish(settings: Settings, stream: Events) -> None:
    from streams.codec import build_codec
    from streams.producer import EventProducer

    by_name: dict[str, list[dict[str, Any]]] = {}
    for name, record in stream:
        by_name.setdefault(name, []).append(record)
    with EventProducer(settings, build_codec(settings)) as producer:
        for name, records in by_name.items():
            producer.produce_many(name, records)
        producer.flush(120)


def raw_figures(settings: Settings, topics: list[str], count: int) -> dict[str, Any]:
    """confluent-kafka consume + decode of ``topics`` (events/s and per CPU second)."""
    from confluent_kafka import Consumer, KafkaError

    from streams.codec import build_codec
    from streams.kafka_config import confluent_config

    codec = build_codec(settings)
    consumer = Consumer(
        confluent_config(
            settings,
            **{
                "group.id": f"{settings.kafka.topic_prefix}-raw",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.max.bytes": 32 * 1024 * 1024,
                "max.partition.fetch.bytes": 4 * 1024 * 1024,
            },
        )
    )
    consumer.subscribe(topics)
    seen, first, cpu = 0, 0.0, 0.0
    deadline = time.monotonic() + 300
    try:
        while seen < count:
            if time.monotonic() > deadline:
                raise ServiceError(f"bench pipeline: raw consumer read {seen} of {count} in 300 s")
            for message in consumer.consume(num_messages=10_000, timeout=1.0):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise ServiceError(f"bench pipeline: raw consumer: {error}")
                    continue
                if not seen:
                    first, cpu = time.perf_counter(), time.process_time()
                codec.decode(message.value())  # type: ignore[arg-type]
                seen += 1
        elapsed, cpu = time.perf_counter() - first, time.process_time() - cpu
    finally:
        consumer.close()
    return {
        "events": count,
        "events_per_s": round(count / elapsed),
        "events_per_cpu_s": round(count / cpu) if cpu else None,
    }


def naive_figures(run: Run, children: Children, count: int) -> dict[str, Any]:
    """The naive Faust agent from its first event to ``count`` events (then stopped)."""
    worker = children.worker("naive", run.group("naive"), ["processors.naive_profiles"])
    try:
        first: tuple[float, int, float] | None = None
        deadline = time.monotonic() + 120 + count / 500
        while time.monotonic() < deadline:
            children.check()
            stats = (worker.stats() or {}).get("naive_profiles") or {}
            done, at = int(stats.get("events", 0)), time.perf_counter()
            if done and first is None:
                first = (at, done, cpu_seconds(worker.pid))
            if first is not None and done >= count and at > first[0]:
                cpu = cpu_seconds(worker.pid) - first[2]
                return {
                    "events": done - first[1],
                    "events_per_s": round((done - first[1]) / (at - first[0])),
                    "events_per_cpu_s": round((done - first[1]) / cpu) if cpu else None,
                    "customers": stats.get("customers"),
                }
            time.sleep(0.1)
        raise ServiceError(f"bench pipeline: naive worker did not reach {count} events")
    finally:
        children.stop(worker.child)


def catch_up(
    lag: GroupLag,
    group: str,
    workers: list[Worker],
    children: Children,
    timeout: float,
    on_first_commit: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Wait until ``group`` committed every input event; its rate (``LagRate``) and CPU.

    ``on_first_commit`` runs when the measured span (and the CPU count) starts.
    """
    meter = LagRate(sum(lag.marks.values()))
    cpu_start: float | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children.check()
        at = time.perf_counter()
        value = lag.lag(group)
        if value is not None and value < meter.total and cpu_start is None:
            cpu_start = sum(cpu_seconds(w.pid) for w in workers)
            if on_first_commit is not None:
                on_first_commit()
        if meter.add(at, value):
            cpu = sum(cpu_seconds(w.pid) for w in workers) - (cpu_start or 0.0)
            rate = meter.events_per_s
            counted = meter.first[1] if meter.first else 0
            return {
                "events": meter.total,
                "events_measured": counted,
                "events_per_s": round(rate) if rate else None,
                "events_per_cpu_s": round(counted / cpu) if cpu > 0 else None,
                "seconds": round(at - meter.first[0], 2) if meter.first else None,
            }
        time.sleep(0.1)
    behind = lag.behind(group)
    raise ServiceError(
        f"bench pipeline: group {group} not caught up in {timeout:.0f} s; "
        f"{len(behind)} partitions behind: {', '.join(behind[:6])}"
    )


def produced_per_event(produced: dict[str, int], events: int, top: int = 8) -> dict[str, Any]:
    """Messages the worker wrote per input event (changelogs, outputs, internal topics).

    Every table write and emit costs a trip through Faust's producer, the worker's largest
    shared cost, so this says where the per-event CPU goes; the ``top`` topics by count.
    """
    if not events:
        return {}
    # the naive worker's changelog is not this worker's; the sink's few dead letters count
    produced = {name: n for name, n in produced.items() if not name.startswith("naive-")}
    total = sum(produced.values())
    ranked = sorted(produced.items(), key=lambda kv: -kv[1])[:top]
    return {
        "produced_per_event": round(total / events, 3),
        **{f"produced_per_event.{name}": round(n / events, 3) for name, n in ranked if n},
    }


def _migrate(run: Run, database: str) -> None:
    from sinks.clickhouse.backend import ServerBackend
    from sinks.clickhouse.migrations import migrate

    clickhouse = run.settings.clickhouse.model_copy(update={"database": database})
    backend = ServerBackend(run.settings.model_copy(update={"clickhouse": clickhouse}))
    try:
        migrate(backend)
    finally:
        backend.close()


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(settings: Settings, **options: Any) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    bench = Run.create(settings, run_id)
    children = Children(bench)
    databases: list[str] = []
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        figures = _run(bench, children, databases, options)
    finally:
        children.stop_all()
        from cxstream.bench.pipeline_procs import clean_up

        problems = clean_up(bench, databases)
        signal.signal(signal.SIGTERM, previous)
    if problems:
        figures["cleanup_problems"] = "; ".join(problems)
    return figures


def _run(
    bench: Run, children: Children, databases: list[str], options: dict[str, Any]
) -> dict[str, Any]:
    from cxstream.bench.pipeline_procs import free_port
    from cxstream.demo.children import OnCall
    from streams.topics import INPUT_EVENTS, ensure_topics, platform_topics

    s = bench.settings
    events = int(options.get("events", 200_000))
    customers = int(options.get("customers", 20_000))
    seed = int(options.get("seed", 8))
    # per catch-up; generous for a loaded machine, so that a stuck group fails the part only
    timeout = float(options.get("timeout", 120 + events / 500))
    ensure_topics(s, platform_topics(s))
    started = time.perf_counter()
    stream = simulated(events, customers, seed)
    generated_s = time.perf_counter() - started
    publish(s, stream)
    inputs = [s.topic(name) for name in INPUT_EVENTS]
    figures: dict[str, Any] = {
        "events": len(stream),
        "customers": customers,
        "simulate_seconds": round(generated_s, 1),
    }
    figures["raw"] = raw_figures(s, inputs, len(stream))
    naive_events = min(len(stream), int(options.get("naive_events", 50_000)))
    figures["naive"] = naive_figures(bench, children, naive_events)

    # the whole platform, one worker
    lag = GroupLag(s, inputs)
    try:
        databases.append(bench.database("w1"))
        _migrate(bench, databases[-1])
        oncall = OnCall.create(free_port(), bench.home / "logs", bench.run_id)
        children.receiver(oncall)
        notify_env = bench.env(
            **oncall.env(),
            CX_NOTIFY__GROUP_ID=bench.group("notifier"),
            CX_NOTIFY__DELIVERY_LOG_PATH=str(bench.home / "delivery.sqlite"),
        )
        children.spawn("notifier", ["notify", "serve"], notify_env)
        children.sink("sink", bench.group("sink"), databases[-1])
        worker = children.worker("worker", bench.group("worker"))
        rss_start = rss_bytes(worker.pid)
        profiling = Profiling(worker.pid, bench.home / "logs" / "worker-profile.txt")
        on_first = profiling.start if _on(options, "profile", default=False) else None
        pipeline = catch_up(lag, bench.group("worker"), [worker], children, timeout, on_first)
        stats = worker.stats() or {}
        profiles = (stats.get("profiles") or {}).get("customers")
        rss = rss_bytes(worker.pid)
        pipeline.update(produced_per_event(lag.produced(bench.prefix), pipeline["events"]))
        pipeline.update(
            {
                "processors": sorted(k for k in stats if k not in ("dead_letters", "emitted")),
                "worker_rss_mib": round(rss / 2**20, 1),
                "worker_rss_growth_mib": round((rss - rss_start) / 2**20, 1),
                "profiles_in_worker": profiles,
                "vs_raw": ratio(pipeline["events_per_s"], figures["raw"]["events_per_s"]),
                "vs_naive": ratio(pipeline["events_per_s"], figures["naive"]["events_per_s"]),
            }
        )
        if profiling.sampler is not None:
            per_cpu_s = pipeline["events_per_cpu_s"]
            pipeline["profile"] = {
                "path": str(profiling.sampler.stop()),
                **profile_figures(profiling.sampler.path, 1e6 / per_cpu_s if per_cpu_s else None),
            }
        figures["pipeline"] = pipeline
        if _on(options, "live"):
            from cxstream.bench.pipeline_live import live_figures

            figures["live"] = live_figures(
                s.model_copy(
                    update={
                        "clickhouse": s.clickhouse.model_copy(update={"database": databases[-1]})
                    }
                ),
                stream,
                options,
                tag=f"bp{bench.run_id}",
                received_path=oncall.received,
                alive=children.check,
            )
        children.stop_all()

        if _on(options, "two_workers"):
            try:
                figures["two_workers"] = _two_workers(bench, children, databases, lag, timeout)
            except ServiceError as exc:  # the figures so far still count
                figures["two_workers"] = {"error": str(exc)}
            two_rate = figures["two_workers"].get("events_per_s")
            figures["two_workers"]["vs_one_worker"] = ratio(two_rate, pipeline["events_per_s"])
            figures["two_workers"]["vs_raw"] = ratio(two_rate, figures["raw"]["events_per_s"])
            children.stop_all()
    finally:
        lag.close()

    if _on(options, "memory"):
        figures["memory"] = memory_figures(s, options)
    figures["targets"] = {
        "vs_raw": TARGET_VS_RAW,
        "vs_naive": TARGET_VS_NAIVE,
        "vs_raw_met": (figures["pipeline"]["vs_raw"] or 0) >= TARGET_VS_RAW,
        "vs_naive_met": (figures["pipeline"]["vs_naive"] or 0) >= TARGET_VS_NAIVE,
    }
    figures["settings"] = {
        "kafka": s.kafka.bootstrap_servers,
        "partitions": s.kafka.partitions,
        "clickhouse": f"{s.clickhouse.host}:{s.clickhouse.port}",
        "redis": s.redis.url,
        "store": s.worker.store,
        "batch_size": s.worker.batch_size,
        "commit_interval_seconds": s.worker.commit_interval_seconds,
        "sink_batch_max_rows": s.clickhouse.sink_batch_max_rows,
        "sink_batch_max_seconds": s.clickhouse.sink_batch_max_seconds,
    }
    return figures


def _two_workers(
    bench: Run, children: Children, databases: list[str], lag: GroupLag, timeout: float
) -> dict[str, Any]:
    """Two worker processes in one new group (and a sink of their own) on the same topics."""
    lag.refresh()
    databases.append(bench.database("w2"))
    _migrate(bench, databases[-1])
    children.sink("sink2", bench.group("sink2"), databases[-1])
    group = bench.group("worker2")
    pair = [children.worker(f"worker2{n}", group) for n in "ab"]
    two = catch_up(lag, group, pair, children, timeout)
    rate = two["events_per_s"]
    two["events_per_s_per_worker"] = round(rate / 2) if rate else None
    two["note"] = (
        f"{os.cpu_count()} cores shared by both workers, their sink, the broker, "
        "ClickHouse and Redis"
    )
    return two


def memory_figures(settings: Settings, options: dict[str, Any]) -> dict[str, Any]:
    """Per million profiles and open feedback items, from the feature benches' functions."""
    from cxstream.bench.profiles import _memory
    from cxstream.bench.sla import engine_figures

    customers = int(options.get("memory_customers", 1_000_000))
    items = int(options.get("memory_items", 1_000_000))
    prof = _memory(
        customers,
        int(options.get("memory_sample", 1000)),
        float(options.get("memory_history_days", 7)),
    )
    sla = engine_figures(settings, items, 500, 200, 10)
    heap = prof["memory_tracemalloc_bytes_per_customer"]
    return {
        "profiles_measured": customers,
        "profile_serialized_bytes": prof["memory_serialized_bytes_per_customer"],
        "profile_heap_bytes": heap,
        "profiles_mib_per_million": round(heap * 1e6 / 2**20, 1),
        "profiles_source": "cxstream.bench.profiles._memory (tracemalloc of the table dict)",
        "feedback_items_measured": items,
        "feedback_bytes_per_item": sla["memory_bytes_per_item"],
        "feedback_mib_per_million_open": sla["memory_mib_per_million_items"],
        "feedback_source": "cxstream.bench.sla.engine_figures (RSS growth of the SLA engine)",
    }
