"""Benchmark of the simulator: is the generator ever the bottleneck?

``run(settings, **options) -> dict`` (the ``cxstream bench`` protocol). Figures, events/s:

- ``generate``: :func:`generate` alone (population built beforehand, timed apart), wall and
  CPU time: the generator's own ceiling on one core;
- ``encode_only``: ``codec.encode`` of the same, pre-generated events (the codec's ceiling);
- ``generate_encode``: generation + encoding in one loop (``cxstream simulate --dry-run``);
- with ``kafka=true``: ``publish`` (generate + ``EventProducer.produce`` + flush, what
  ``cxstream simulate`` reaches) and ``send_only`` (the SDK sending the pre-encoded bytes, the
  Kafka side's ceiling), on topics of a unique prefix that are deleted afterwards.

Options: ``customers`` (10000), ``days`` (1.0), ``seed`` (1), ``kafka`` (false).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from cxstream.settings import Settings
from cxstream.simulate.config import DAY_MS, SimulationConfig, parse_start
from cxstream.simulate.population import build_population
from cxstream.simulate.publish import EncodeOnlySink, publish, publish_to_kafka
from cxstream.simulate.traffic import generate

_START = "2026-11-30T00:00:00+08:00"  # a Monday: the run covers ordinary weekdays


def _timed(work: Callable[[], int]) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    count = work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "events": count,
        "wall_s": round(wall, 3),
        "events_per_s": round(count / wall, 1),
        "events_per_cpu_s": round(count / cpu, 1) if cpu > 0 else 0.0,
    }


def run(
    settings: Settings,
    *,
    customers: int = 10_000,
    days: float = 1.0,
    seed: int = 1,
    kafka: bool = False,
) -> dict[str, Any]:
    from streams.codec import build_codec

    config = SimulationConfig(
        start_ms=parse_start(_START),
        duration_ms=int(days * DAY_MS),
        customers=customers,
        seed=seed,
    )
    started = time.perf_counter()
    build_population(config)
    population_s = time.perf_counter() - started

    figures: dict[str, Any] = {
        "config": config.describe(),
        "population_build_s": round(population_s, 3),
    }
    # the first next() builds the population again: the clock starts after it
    total_wall, total_cpu = time.perf_counter(), time.process_time()
    stream = generate(config)
    first = next(stream)
    wall, cpu = time.perf_counter(), time.process_time()
    events = [first, *stream]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    figures["generate"] = {
        "events": len(events) - 1,
        "wall_s": round(wall, 3),
        "events_per_s": round((len(events) - 1) / wall, 1),
        "events_per_cpu_s": round((len(events) - 1) / cpu, 1) if cpu > 0 else 0.0,
        "with_population_wall_s": round(time.perf_counter() - total_wall, 3),
        "with_population_cpu_s": round(time.process_time() - total_cpu, 3),
    }

    codec = build_codec(settings)

    def encode_only() -> int:
        encode = codec.encode
        for name, record in events:
            encode(name, record)
        return len(events)

    figures["encode_only"] = _timed(encode_only)
    sink = EncodeOnlySink(codec)
    report = publish(config, sink)
    figures["generate_encode"] = {
        "events": report.sent,
        "wall_s": round(report.elapsed_s, 3),
        "events_per_s": round(report.events_per_second, 1),
        "bytes_per_event": round(sink.bytes / max(report.sent, 1), 1),
    }
    if kafka:
        figures.update(_kafka_figures(settings, config, events, codec))
    return figures


def _kafka_figures(
    settings: Settings, config: SimulationConfig, events: list[Any], codec: Any
) -> dict[str, Any]:
    from streams.producer import EventProducer
    from streams.topics import delete_topics, ensure_topics, platform_topics

    prefix = f"bench-sim-{uuid.uuid4().hex[:8]}"
    scoped = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"topic_prefix": prefix})}
    )
    specs = platform_topics(scoped)
    ensure_topics(scoped, specs)
    try:
        report = publish_to_kafka(scoped, config)
        figures: dict[str, Any] = {
            "publish": {
                "events": report.sent,
                "wall_s": round(report.elapsed_s, 3),
                "events_per_s": round(report.events_per_second, 1),
            },
            "kafka": {"bootstrap_servers": scoped.kafka.bootstrap_servers, "topic_prefix": prefix},
        }
        encoded = [(scoped.topic(n), codec.encode(n, r), r) for n, r in events]

        def send_only() -> int:
            with EventProducer(scoped, codec) as producer:
                for topic, value, record in encoded:
                    producer.produce_encoded(topic, value, event_id=record["event_id"])
                producer.flush()
            return len(encoded)

        figures["send_only"] = _timed(send_only)
        return figures
    finally:
        delete_topics(scoped, [spec.name for spec in specs])
