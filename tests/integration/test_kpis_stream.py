"""Simulated events -> real Kafka -> ``cxstream worker -p kpis`` -> kpi_measurement and alert.

The measurements of every closed window, summed over input partitions, must equal the KPIs
recomputed here from the same events with the board's rules written out independently; the
security-satisfaction survey is simulated far below its target, so exactly one breach alert
is raised for it (one streak, deterministic id).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from cxstream.settings import Settings
from cxstream.simulate import ListLabelSink, SimulationConfig, generate
from streams.codec import AvroCodec, build_codec
from streams.kafka_config import confluent_config
from streams.producer import EventProducer
from tests.integration.test_kafka_roundtrip import (
    CXSTREAM,
    settings_fixture,  # noqa: F401 (the `settings` fixture, shared)
    worker_env,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
START_MS = 1_767_225_600_000  # 2026-01-01 00:00 UTC
SPAN_MS = 3 * 3_600_000
WIDTH = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
SOURCES = ("channel_interaction", "survey_response")
BREACH_SECONDS = 1800
MIN_SAMPLES = 5


def simulated() -> list[tuple[str, dict[str, Any]]]:
    config = SimulationConfig(
        start_ms=START_MS,
        duration_ms=SPAN_MS,
        customers=400,
        seed=3,
        survey_per_visit=0.5,
        survey_means={
            "information_access": 95.0,
            "feedback_handling": 95.0,
            "personalisation": 97.0,
            "security": 55.0,
            "overall": 85.0,
        },
    )
    return [(e.name, e.record) for e in generate(config, ListLabelSink()) if e.name in SOURCES]


def expected(events: list[tuple[str, dict[str, Any]]], kpi: str, start: int, width: int):
    """(numerator, denominator) of ``kpi`` over ``[start, start + width)``: the board's rules."""
    online = {"web", "app", "social", "chat"}
    dimension = {
        "information_access_score": "information_access",
        "feedback_satisfaction": "feedback_handling",
        "personalisation_satisfaction": "personalisation",
        "security_satisfaction": "security",
    }
    numerator = denominator = 0
    for name, r in events:
        if not start <= r["occurred_at"] < start + width:
            continue
        if kpi == "online_share" and name == "channel_interaction":
            if r["action"] in ("information_request", "service_request"):
                numerator += r["channel"] in online
                denominator += 1
        elif name == "survey_response" and r["dimension"] == dimension.get(kpi):
            numerator += r["score"] if kpi == "information_access_score" else r["score"] >= 80
            denominator += 1
    return numerator, denominator


def consume(settings: Settings, codec: AvroCodec, topic: str, quiet: float, timeout: float):
    """Records of ``topic`` until nothing new came for ``quiet`` seconds (after the first)."""
    consumer = Consumer(
        confluent_config(
            settings,
            **{
                "group.id": f"{settings.kafka.topic_prefix}-reader-{topic}-{time.time()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            },
        )
    )
    consumer.subscribe([topic])
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                if records and time.monotonic() - last > quiet:
                    break
                continue
            records.append(codec.decode(message.value()).record)
            last = time.monotonic()
    finally:
        consumer.close()
    return records


def test_measurements_equal_the_recomputed_kpis_and_a_breach_alerts_once(
    settings: Settings, tmp_path: Path
) -> None:
    events = simulated()
    codec = build_codec(settings)
    with EventProducer(settings, codec) as producer:
        for name in SOURCES:
            producer.produce_many(name, [r for n, r in events if n == name])
        producer.flush(30)

    log = tmp_path / "worker.log"
    env = worker_env(
        settings,
        PYTHONPATH=str(REPO),
        CX_KPI__BREACH_WINDOW="hour",
        CX_KPI__BREACH_SECONDS=str(BREACH_SECONDS),
        CX_KPI__MIN_SAMPLES=str(MIN_SAMPLES),
        CX_KPI__MAX_CATCHUP_WINDOWS="1000",
    )
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [CXSTREAM, "worker", "-p", "kpis", "--no-ensure-topics"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        measurements = consume(settings, codec, settings.topic("kpi_measurement"), 8, 120)
        alerts = consume(settings, codec, settings.topic("alert"), 2, 15)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    tail = log.read_text(errors="replace")[-3000:]
    assert measurements, tail

    partitions = settings.kafka.partitions
    partials: dict[tuple[str, str, int], dict[int, dict[str, Any]]] = {}
    for m in measurements:
        assert m["source_partition"] >= 0
        by_partition = partials.setdefault((m["kpi"], m["window"], m["window_start"]), {})
        kept = by_partition.get(m["source_partition"])
        if kept is None or kept["revision"] < m["revision"]:
            by_partition[m["source_partition"]] = m
    complete = {key: p for key, p in partials.items() if len(p) == partitions}
    windows = Counter((kpi, window) for kpi, window, _ in complete)
    # a window is complete from the first event of the partition that started last (surveys
    # are sparse: about an hour in) to the closed edge of the one that ended first
    # a floor that the windows compared below are many (the simulator's customers have fewer
    # sessions since they model explicit needs: ~40 complete survey minutes in this run)
    for kpi in ("online_share", "security_satisfaction", "information_access_score"):
        assert windows[kpi, "minute"] >= 30, windows
        assert windows[kpi, "hour"] == windows[kpi, "day"] == windows[kpi, "minute"], windows
    for (kpi, window, start), by_partition in sorted(complete.items()):
        numerator = sum(m["numerator"] for m in by_partition.values())
        denominator = sum(m["denominator"] for m in by_partition.values())
        assert (numerator, denominator) == expected(events, kpi, start, WIDTH[window]), (
            kpi,
            window,
            start,
        )
    # the last day window holds most requests (~120 in 3 h): the comparison is not vacuous
    last_day = max(k for k in complete if k[:2] == ("online_share", "day"))
    assert sum(m["denominator"] for m in complete[last_day].values()) > 50

    assert max(Counter(a["alert_id"] for a in alerts).values(), default=0) == 1, alerts
    security = [a for a in alerts if a["subject_id"] == "security_satisfaction"]
    assert len(security) == 1, (alerts, tail)
    alert = security[0]
    assert (alert["kind"], alert["level"], alert["department"]) == ("kpi", "breach", "risk_control")
    details = alert["details"]
    start = int(details["window_start"])
    numerator, denominator = expected(events, "security_satisfaction", start, WIDTH["hour"])
    assert (int(details["numerator"]), int(details["denominator"])) == (numerator, denominator)
    assert denominator >= MIN_SAMPLES
    assert numerator / denominator < 0.95
    breach_start = int(details["breach_start"])
    assert alert["alert_id"] == f"kpi-security_satisfaction-hour-{breach_start}"
    assert start + WIDTH["hour"] - breach_start >= BREACH_SECONDS * 1000
