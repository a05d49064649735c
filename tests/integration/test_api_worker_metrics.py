"""``GET /metrics`` of a real Faust worker (create_app + register_metrics_view, run as a process
the way ``cxstream worker`` runs): events in, dead letters, consumer lag, processor stats and the
per-batch histograms, parsed with prometheus_client's own text parser."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cxstream.bench.produce import sample_events
from cxstream.settings import Settings
from streams.codec import build_codec
from streams.producer import EventProducer
from tests.integration.test_kafka_roundtrip import (
    EVENT,
    settings_fixture,  # noqa: F401 (the `settings` fixture: own topics, app id, web port)
    worker_env,
)

pytestmark = pytest.mark.integration

#: the worker process: the app as create_app builds it, plus this module's metrics view
WORKER = """
import faust
import processors.channel_counts as channel_counts
from cxstream.settings import load_settings
from streams.app import create_app
from streams.metrics import register_metrics_view

contexts = []


class KeepContext:
    @staticmethod
    def register(app, context):
        contexts.append(context)


app = create_app(load_settings(), processors=[channel_counts, KeepContext])
register_metrics_view(app, contexts[0])
faust.Worker(app, loglevel="warning", override_logging=False).execute_from_commandline()
"""

PILLS = (b"\x07not avro at all", b"\x01\x00")


def scrape(settings: Settings) -> dict[str, list[Any]] | None:
    url = f"http://127.0.0.1:{settings.worker.web_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def value(samples: list[Any], name: str, **labels: str) -> float | None:
    for sample in samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    return None


def test_worker_metrics_show_events_dead_letters_lag_and_stats(
    settings: Settings, tmp_path: Path
) -> None:
    records = sample_events(300, seed=11)
    topic = settings.topic(EVENT)
    with EventProducer(settings, build_codec(settings)) as producer:
        for record in records:
            producer.produce(EVENT, record)
        for i, pill in enumerate(PILLS):
            producer.produce_encoded(topic, pill, key=f"pill-{i}".encode())
        producer.flush(30)

    log = tmp_path / "worker.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER], env=worker_env(settings), stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 60
        metrics = None
        while time.monotonic() < deadline:
            metrics = scrape(settings)
            lags = [] if metrics is None else [
                s.value for s in metrics["cxstream_worker_consumer_lag"]
                if s.labels["topic"] == topic
            ]  # fmt: skip
            done = metrics is not None and value(
                metrics["cxstream_worker_events_in"], "cxstream_worker_events_in_total", topic=topic
            ) == len(records)
            # lag reaches 0 once the offsets of everything read are committed
            if done and len(lags) == settings.kafka.partitions and not any(lags):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(
                f"worker metrics never settled: {metrics}\n{log.read_text()[-3000:]}"
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert metrics is not None

    def metric(family: str, name: str | None = None, **labels: str) -> float | None:
        assert metrics is not None
        return value(metrics[family], name or family, **labels)

    total = "cxstream_worker_dead_letters_total"
    assert metric("cxstream_worker_dead_letters", total, reason="bad_magic") == 1
    assert metric("cxstream_worker_dead_letters", total, reason="truncated") == 1
    by_topic = "cxstream_worker_dead_letters_by_topic"
    assert metric(by_topic, f"{by_topic}_total", topic=topic) == 2
    assigned = metric("cxstream_worker_assigned_partitions")
    assert assigned is not None
    assert assigned >= settings.kafka.partitions

    # the processor's own stats, numeric leaves by dotted path
    stat = "cxstream_worker_stat"
    assert metric(stat, processor="channel_counts", path="total") == len(records)
    web = sum(1 for r in records if r["channel"] == "web")
    assert metric(stat, processor="channel_counts", path="channels.web") == web

    # every batch was timed (lanes are instrumented before the worker consumes)
    batches = metric("cxstream_worker_batches", "cxstream_worker_batches_total", topic=topic)
    seconds, delay = "cxstream_worker_batch_seconds", "cxstream_worker_event_delay_seconds"
    assert batches is not None
    assert batches >= 1
    assert metric(seconds, f"{seconds}_count", topic=topic) == batches
    assert metric(delay, f"{delay}_count", topic=topic) == batches
