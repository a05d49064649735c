"""SIGKILL of the ``kpis`` worker mid-stream: after the restart no window is counted twice.

The first half of the events is processed, the worker is killed right after its first
measurements appear (before its periodic offset commit), the second half is produced and a new
worker recovers the tables from their changelogs and replays what was not committed. Every
complete window, summed over partitions at each partition's highest revision, must still equal
the recomputation, and a window published twice at one revision must be the same event.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from cxstream.settings import Settings
from streams.codec import build_codec
from streams.producer import EventProducer
from tests.integration.test_kafka_roundtrip import (
    CXSTREAM,
    settings_fixture,  # noqa: F401 (the `settings` fixture, shared)
    worker_env,
)
from tests.integration.test_kpis_stream import (
    REPO,
    SOURCES,
    START_MS,
    WIDTH,
    consume,
    expected,
    simulated,
)

pytestmark = pytest.mark.integration

HALF_MS = START_MS + 90 * 60_000


def produce(settings: Settings, events: list[tuple[str, dict[str, Any]]]) -> None:
    with EventProducer(settings, build_codec(settings)) as producer:
        for name in SOURCES:
            producer.produce_many(name, [r for n, r in events if n == name])
        producer.flush(30)


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = worker_env(settings, PYTHONPATH=str(REPO), CX_KPI__MAX_CATCHUP_WINDOWS="1000")
    with log.open("ab") as out:
        return subprocess.Popen(
            [CXSTREAM, "worker", "-p", "kpis", "--no-ensure-topics"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_a_killed_worker_replays_without_double_counting(
    settings: Settings, tmp_path: Path
) -> None:
    events = simulated()
    codec = build_codec(settings)
    topic = settings.topic("kpi_measurement")
    produce(settings, [e for e in events if e[1]["occurred_at"] < HALF_MS])
    log = tmp_path / "worker.log"
    proc = start_worker(settings, log)
    try:
        first = consume(settings, codec, topic, 0.5, 90)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert first, log.read_text(errors="replace")[-3000:]

    produce(settings, [e for e in events if e[1]["occurred_at"] >= HALF_MS])
    proc = start_worker(settings, log)
    try:
        time.sleep(1)
        measurements = consume(settings, codec, topic, 10, 120)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    tail = log.read_text(errors="replace")[-3000:]

    by_revision: dict[tuple[Any, ...], dict[str, Any]] = {}
    partials: dict[tuple[str, str, int], dict[int, dict[str, Any]]] = {}
    for m in measurements:
        key = (m["kpi"], m["window"], m["window_start"], m["source_partition"], m["revision"])
        same = by_revision.setdefault(key, m)
        assert same == m, (same, m)
        by_partition = partials.setdefault(key[:3], {})
        kept = by_partition.get(m["source_partition"])
        if kept is None or kept["revision"] < m["revision"]:
            by_partition[m["source_partition"]] = m
    complete = {k: p for k, p in partials.items() if len(p) == settings.kafka.partitions}
    late = [k for k in complete if k[1] == "minute" and k[2] >= HALF_MS]
    assert len(late) >= 30, tail
    for (kpi, window, start), by_partition in complete.items():
        numerator = sum(m["numerator"] for m in by_partition.values())
        denominator = sum(m["denominator"] for m in by_partition.values())
        assert (numerator, denominator) == expected(events, kpi, start, WIDTH[window]), (
            kpi,
            window,
            start,
            tail,
        )
