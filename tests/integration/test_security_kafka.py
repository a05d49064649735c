"""Security detection through real Kafka: a simulated stream with injected scenarios goes to
``cxstream worker -p security``; the flags on the topic match the ground-truth labels, and a
restart of the worker half-way continues without sending any flag twice."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError

from cxstream.settings import Settings
from cxstream.simulate import ListLabelSink, SimulationConfig, generate, parse_start
from processors.security.evaluation import benign_logins, evaluate
from streams.codec import build_codec
from streams.kafka_config import confluent_config
from streams.producer import EventProducer
from tests.integration.test_kafka_roundtrip import (
    CXSTREAM,
    _wait_for,
    settings_fixture,  # noqa: F401 (the `settings` fixture, shared)
    worker_env,
)

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def security_worker(settings: Settings, log: Path, **env: str) -> Iterator[None]:
    """``cxstream worker -p security`` until the block ends, then SIGTERM (must exit 0)."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [CXSTREAM, "worker", "-p", "security", "--no-ensure-topics"],
            env=worker_env(settings, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for(lambda: security_stats(settings) is not None, 45, log, "worker web view")
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert proc.returncode == 0, f"worker exited {proc.returncode} on SIGTERM; log: {log}"


def security_stats(settings: Settings) -> dict[str, Any] | None:
    url = f"http://127.0.0.1:{settings.worker.web_port}/v1/stats/security"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            data: dict[str, Any] = json.load(response)
            return data
    except OSError:
        return None


def produce(settings: Settings, records: list[dict[str, Any]]) -> None:
    with EventProducer(settings, build_codec(settings)) as producer:
        for record in records:
            producer.produce("access_event", record)
        producer.flush(30)
        assert producer.delivered == len(records)


def read_flags(settings: Settings, timeout: float = 20) -> list[dict[str, Any]]:
    codec = build_codec(settings)
    consumer = Consumer(
        {
            **confluent_config(settings),
            "group.id": f"{settings.worker.app_id}-flags-reader",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.subscribe([settings.topic("security_flag")])
    flags: list[dict[str, Any]] = []
    eof: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(eof) < settings.kafka.partitions and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(message.partition())
                continue
            flags.append(codec.decode(message.value()).record)
    finally:
        consumer.close()
    return flags


def wait_processed(settings: Settings, log: Path, events: int, failures: int) -> None:
    def done() -> bool:
        stats = security_stats(settings)
        return bool(stats) and stats["events"] >= events and stats["network_events"] >= failures

    _wait_for(done, 60, log, f"{events} access events and {failures} re-keyed failures")
    time.sleep(1.0)  # the flags of the last batch are awaited before its ack; margin for the view


def test_flags_match_labels_and_a_restart_sends_no_flag_twice(
    settings: Settings, tmp_path: Path
) -> None:
    config = SimulationConfig(
        start_ms=parse_start("2026-12-07T00:00:00Z"),
        duration_ms=8 * 3_600_000,
        seed=20261207,
        customers=400,
        staff=30,
        staff_bulk_records=120,
        scenarios={
            "brute_force": 3,
            "credential_stuffing": 2,
            "impossible_travel": 3,
            "staff_bulk_access": 2,
        },
    )
    sink = ListLabelSink()
    records = [e.record for e in generate(config, sink) if e.name == "access_event"]
    labels = [label.to_json() for label in sink.labels]
    labelled = {event_id for label in labels for event_id in label["event_ids"]}
    half = len(records) // 2
    log = tmp_path / "worker.log"
    env = {"CX_SECURITY__ANOMALY_WARMUP": "100000"}  # the model scores; rules decide (small run)

    def failures(part: list[dict[str, Any]]) -> int:
        # re-keyed twice (ip and device) when both are set
        return sum(
            bool(r["ip"]) + bool(r["device_id"]) for r in part if r["action"] == "login_failure"
        )

    produce(settings, records[:half])
    with security_worker(settings, log, **env):
        wait_processed(settings, log, half, failures(records[:half]))
    first = read_flags(settings)
    produce(settings, records[half:])
    with security_worker(settings, log, **env):
        wait_processed(settings, log, len(records) - half, failures(records[half:]))
    flags = read_flags(settings)

    assert len(first) > 0
    ids = [flag["flag_id"] for flag in flags]
    assert len(ids) == len(set(ids)), "a flag was sent twice"
    assert {f["flag_id"] for f in first} <= set(ids)
    figures = evaluate(flags, labels, benign_login_count=benign_logins(records, labelled))
    for scenario in (
        "brute_force",
        "credential_stuffing",
        "impossible_travel",
        "staff_bulk_access",
    ):
        assert figures[f"{scenario}.recall"] >= 0.9, figures
        assert figures[f"{scenario}.precision"] >= 0.9, figures
    # PII: no clear ip address in any flag
    ips = {r["ip"] for r in records if r["ip"]}
    assert not any(ip in json.dumps(flag) for flag in flags for ip in ips)
