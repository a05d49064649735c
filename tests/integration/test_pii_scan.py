"""Planted PII never reaches ClickHouse or the sink's logs in clear text.

Simulated traffic (cxstream.simulate) with unique clear-text values planted in the PII fields
(registration name / e-mail / phone / national id, feedback text and contact, access IPs) goes
through real Kafka and a real ``cxstream sink`` process into ClickHouse. Every string column of
every table and every line of the sink's log are then searched for the planted values. The
scanner is proven able to find them (Kafka's input topics hold them; a value written in clear is
found), so an empty result means something.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cxstream.privacy import pseudonymise
from cxstream.settings import Settings
from cxstream.simulate import SimulationConfig, generate
from sinks.clickhouse.backend import ClickHouseBackend, make_backend
from sinks.clickhouse.migrations import migrate
from streams.codec import build_codec
from streams.producer import EventProducer
from streams.topics import delete_topics, ensure_topics, platform_topics
from tests.support.pii import PiiSources, scan_for_planted_pii
from tests.support.services import LocalStack

pytestmark = pytest.mark.integration
START_MS = 1_767_225_600_000


@pytest.fixture
def env(local_stack: LocalStack) -> Iterator[Settings]:
    name = f"pii{uuid.uuid4().hex[:10]}"
    base = local_stack.settings
    settings = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"topic_prefix": name, "partitions": 2}),
            "clickhouse": base.clickhouse.model_copy(
                update={"database": name, "sink_group_id": f"{name}-sink"}
            ),
        }
    )
    ensure_topics(settings, platform_topics(settings))
    try:
        yield settings
    finally:
        delete_topics(settings, [t.name for t in platform_topics(settings)])
        backend = make_backend(settings)
        backend.execute(f"DROP DATABASE IF EXISTS {settings.clickhouse.database}")
        backend.close()


def planted_traffic(tag: str) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, str]]:
    """Simulator events with unique PII planted; returns the events and field -> value."""
    events = [
        (e.name, dict(e.record))
        for e in generate(SimulationConfig(start_ms=START_MS, max_events=5000, customers=60))
    ]
    planted = {
        "full_name": f"Plantedname Zq{tag}",
        "email": f"planted.{tag}@example.org",
        "phone": f"+86 139 {int(tag[:6], 16) % 10_000_000:07d}",
        "national_id": f"11010119900307{tag[:4].upper()}",
        "text": f"my card was blocked, secret-{tag}",
        "contact_email": f"callback.{tag}@example.org",
        "ip": f"203.0.113.{int(tag[:2], 16) % 250 + 1}",
    }
    seen: set[str] = set()
    for name, record in events:
        if name == "customer_registered" and "full_name" not in seen:
            for field in ("full_name", "email", "phone", "national_id"):
                record[field] = planted[field]
            seen.add("full_name")
        elif name == "feedback_submitted" and "text" not in seen:
            record["text"] = planted["text"]
            record["contact_email"] = planted["contact_email"]
            seen.add("text")
        elif name == "access_event" and record.get("ip") and "ip" not in seen:
            record["ip"] = planted["ip"]
            seen.add("ip")
    assert seen == {"full_name", "text", "ip"}, f"simulator traffic lacks {seen}"
    return events, planted


def wait_for_rows(backend: ClickHouseBackend, expected: int, timeout: float = 60.0) -> int:
    tables = ("customer_registered", "feedback_submitted", "access_event")
    deadline = time.monotonic() + timeout
    total = 0
    while time.monotonic() < deadline:
        try:
            total = sum(
                int(backend.query(f"SELECT count() FROM {backend.database}.{t}")[0][0])
                for t in tables
            )
        except Exception:  # tables appear when the sink has migrated
            total = 0
        if total >= expected:
            return total
        time.sleep(0.3)
    return total


def test_planted_pii_is_not_in_clickhouse_or_the_sink_log(env: Settings, tmp_path: Path) -> None:
    settings = env
    tag = uuid.uuid4().hex[:8]
    events, planted = planted_traffic(tag)
    with EventProducer(settings, build_codec(settings)) as producer:
        for name, record in events:
            producer.produce(name, record)
        producer.flush(60)
    expected = sum(
        1 for n, _ in events if n in {"customer_registered", "feedback_submitted", "access_event"}
    )
    log_file = tmp_path / "sink.log"
    sink_env = {
        **os.environ,
        "CX_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "CX_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "CX_CLICKHOUSE__HOST": settings.clickhouse.host or "127.0.0.1",
        "CX_CLICKHOUSE__PORT": str(settings.clickhouse.port),
        "CX_CLICKHOUSE__DATABASE": settings.clickhouse.database,
        "CX_CLICKHOUSE__SINK_GROUP_ID": settings.clickhouse.sink_group_id,
        "CX_LOG_LEVEL": "DEBUG",  # the chattiest the sink gets
    }
    with log_file.open("wb") as log:
        sink = subprocess.Popen(
            [sys.executable, "-m", "cxstream.cli", "sink"],
            env=sink_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        backend = make_backend(settings)
        try:
            landed = wait_for_rows(backend, expected)
        finally:
            sink.send_signal(signal.SIGTERM)
            sink.wait(30)
    assert landed >= expected, log_file.read_text()[-3000:]
    migrate(backend)  # no-op after the sink; makes the erasure tables exist for the scan
    values = list(planted.values())

    found = scan_for_planted_pii(values, PiiSources(clickhouse=backend, logs=[log_file]))

    assert found == [], "\n".join(f"{f.source}: {f.value}" for f in found)
    # the data did land, as pseudonyms: the scan above looked at real rows
    email_pseudonym = pseudonymise(planted["email"], settings, pii_class="email")
    assert scan_for_planted_pii([email_pseudonym], PiiSources(clickhouse=backend))
    assert log_file.stat().st_size > 0
    # the scanner finds what is there: the input topics hold the values in clear by design
    topics = [settings.topic(n) for n in ("customer_registered", "feedback_submitted")]
    in_kafka = scan_for_planted_pii(
        values, PiiSources(kafka_settings=settings, kafka_topics=topics)
    )
    assert {f.value for f in in_kafka} >= {planted["email"], planted["text"]}
    # and a value written to ClickHouse in clear would be reported
    backend.execute(
        f"CREATE TABLE {backend.database}.leak_probe (note String) ENGINE = MergeTree ORDER BY note"
    )
    backend.insert("leak_probe", ["note"], [[f"contact {planted['phone']} asap"]])
    leaks = scan_for_planted_pii(values, PiiSources(clickhouse=backend))
    assert [(f.source.split(".", 1)[1], f.value) for f in leaks] == [
        ("leak_probe.note", planted["phone"])
    ]
    backend.close()
