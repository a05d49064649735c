"""SDK -> real Kafka -> ``cxstream worker`` (channel_counts) round trips, restarts and a crash.

The worker runs as a real subprocess (``cxstream worker``) with its own app id, topic prefix and
web port; counts are read from its ``GET /v1/stats/channels`` view.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from cxstream.bench.produce import sample_events
from cxstream.errors import ValidationError
from cxstream.settings import Settings
from streams.codec import build_codec
from streams.kafka_config import confluent_config
from streams.producer import EventProducer
from streams.topics import admin_client as make_admin
from streams.topics import delete_topics, describe_topics, ensure_topics, platform_topics
from tests.support.services import LocalStack, free_port

pytestmark = pytest.mark.integration

EVENT = "channel_interaction"
CXSTREAM = str(Path(sys.executable).with_name("cxstream"))




@pytest.fixture(name="settings")
def settings_fixture(local_stack: LocalStack, tmp_path: Path) -> Iterator[Settings]:
    """The stack's settings with this test's own topic prefix, app id, web port and data dir."""
    base = local_stack.settings
    run = uuid.uuid4().hex[:10]
    settings = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"topic_prefix": f"test-rt-{run}"}),
            "worker": base.worker.model_copy(
                update={
                    "app_id": f"test-rt-app-{run}",
                    "web_port": free_port(),
                    "data_dir": tmp_path / "worker",
                }
            ),
        }
    )
    specs = platform_topics(settings)
    ensure_topics(settings, specs)
    try:
        yield settings
    finally:
        own = [
            name
            for name in describe_topics(make_admin(settings))
            if name.startswith(settings.worker.app_id)
        ]
        delete_topics(settings, [spec.name for spec in specs] + own)


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CX_")}
    env.update(
        {
            "CX_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "CX_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
            "CX_KAFKA__PARTITIONS": str(settings.kafka.partitions),
            "CX_WORKER__APP_ID": settings.worker.app_id,
            "CX_WORKER__WEB_PORT": str(settings.worker.web_port),
            "CX_WORKER__DATA_DIR": str(settings.worker.data_dir),
            # a killed worker's partitions move after this long (the broker's minimum)
            "CX_WORKER__SESSION_TIMEOUT_SECONDS": "6",
            "CX_LOG_LEVEL": "WARNING",
            **extra,
        }
    )
    return env


@contextlib.contextmanager
def running_worker(settings: Settings, log: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """``cxstream worker -p channel_counts`` until the block ends, then SIGTERM (must exit 0)."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [CXSTREAM, "worker", "-p", "channel_counts", "--no-ensure-topics"],
            env=worker_env(settings, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for(lambda: _stats_or_none(settings) is not None, 45, log, "worker web view")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise AssertionError(f"worker ignored SIGTERM for 30 s; log: {log}") from None
            # SIGTERM is a clean stop: offsets committed, group left, exit status 0
            assert proc.returncode == 0, f"worker exited {proc.returncode} on SIGTERM; log: {log}"


def stats(settings: Settings) -> dict[str, Any]:
    url = f"http://127.0.0.1:{settings.worker.web_port}/v1/stats/channels"
    with urllib.request.urlopen(url, timeout=5) as response:
        data: dict[str, Any] = json.load(response)
        return data


def _stats_or_none(settings: Settings) -> dict[str, Any] | None:
    try:
        return stats(settings)
    except OSError:
        return None


def _wait_for(condition: Any, timeout: float, log: Path, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; worker log:\n{tail}")


def wait_for_total(settings: Settings, total: int, log: Path, timeout: float = 40) -> dict:
    """The stats once ``total`` events are counted (and a moment after, to catch extras)."""
    _wait_for(
        lambda: (_stats_or_none(settings) or {}).get("total", -1) >= total, timeout, log, "counts"
    )
    time.sleep(1.0)  # anything beyond the expected total would show up now
    return stats(settings)


def expected_counts(records: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    by_channel: dict[str, Counter[str]] = {}
    for record in records:
        by_channel.setdefault(record["channel"], Counter())[record["action"]] += 1
    return {channel: dict(sorted(c.items())) for channel, c in sorted(by_channel.items())}


def produce_all(settings: Settings, records: list[dict[str, Any]]) -> None:
    with EventProducer(settings, build_codec(settings)) as producer:
        for record in records:
            producer.produce(EVENT, record)
        producer.flush(30)
        assert producer.delivered == len(records)


def test_sdk_to_worker_counts_exactly_and_skips_duplicates(
    settings: Settings, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    records = sample_events(3000, seed=101)
    # client retries: the same events (same event ids) published again later
    retries = records[100:150]
    with running_worker(settings, log):
        produce_all(settings, records)
        first = wait_for_total(settings, len(records), log)
        produce_all(settings, retries)
        _wait_for(lambda: stats(settings)["duplicates_skipped"] >= len(retries), 30, log, "retries")
        after_retries = stats(settings)

    assert first["total"] == len(records)
    assert first["by_channel"] == expected_counts(records)
    assert first["partitions"] == list(range(settings.kafka.partitions))
    assert after_retries["total"] == len(records)
    assert after_retries["by_channel"] == expected_counts(records)
    assert after_retries["duplicates_skipped"] == len(retries)
    assert after_retries["dead_letters"]["total"] == 0

    # a clean restart recovers the counts from the changelog and re-counts nothing
    more = sample_events(500, seed=202)
    with running_worker(settings, log):
        produce_all(settings, more)
        restarted = wait_for_total(settings, len(records) + len(more), log)
    assert restarted["total"] == len(records) + len(more)
    assert restarted["by_channel"] == expected_counts(records + more)
    assert restarted["duplicates_skipped"] == len(retries)


def test_counts_stay_exact_after_the_worker_is_killed(settings: Settings, tmp_path: Path) -> None:
    """SIGKILL right after counting: uncommitted offsets are replayed, never counted twice."""
    log = tmp_path / "worker.log"
    records = sample_events(4000, seed=303)
    # no offset commit before the kill: the restarted worker replays every one of them
    with running_worker(settings, log, CX_WORKER__COMMIT_INTERVAL_SECONDS="600") as proc:
        produce_all(settings, records)
        wait_for_total(settings, len(records), log)
        proc.kill()  # no commit, no flush: the replay after restart must be recognised
        proc.wait(timeout=10)
    more = sample_events(300, seed=404)
    with running_worker(settings, log):
        produce_all(settings, more)
        after = wait_for_total(settings, len(records) + len(more), log)
    assert after["total"] == len(records) + len(more)
    assert after["by_channel"] == expected_counts(records + more)
    # the replay really happened and was recognised (not merely absent)
    assert 0 < after["replays_skipped"] <= len(records), after["replays_skipped"]


def test_invalid_record_raises_naming_the_field_and_sends_nothing(settings: Settings) -> None:
    record = sample_events(1, seed=9)[0] | {"channel": "fax"}
    with EventProducer(settings, build_codec(settings)) as producer:
        with pytest.raises(ValidationError) as caught:
            producer.produce(EVENT, record)
        assert caught.value.field == "channel"
        assert caught.value.schema == EVENT
        # a record with neither key field cannot be keyed: refused before sending too
        keyless = sample_events(1, seed=10)[0] | {"customer_id": None, "anonymous_id": None}
        with pytest.raises(ValidationError) as no_key:
            producer.produce(EVENT, keyless)
        assert no_key.value.field == "customer_id"
        producer.flush(10)
        assert producer.produced == 0
        assert producer.delivered == 0

    consumer = Consumer(
        confluent_config(
            settings,
            **{"group.id": f"probe-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"},
        )
    )
    try:
        consumer.subscribe([settings.topic(EVENT)])
        seen: list[Any] = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            seen.extend(m for m in consumer.consume(100, timeout=0.5) if m.error() is None)
    finally:
        consumer.close()
    assert seen == []


def test_ensure_topics_creates_aligns_grows_and_is_idempotent(settings: Settings) -> None:
    specs = platform_topics(settings)  # created by the fixture
    again = ensure_topics(settings, specs)
    assert (again.created, again.updated, again.warnings) == ([], {}, [])
    assert sorted(again.unchanged) == sorted(s.name for s in specs)

    alert = next(s for s in specs if s.name == settings.topic("alert"))
    changed = [
        replace(s, partitions=s.partitions + 2, retention_ms=3_600_000) if s is alert else s
        for s in specs
    ]
    report = ensure_topics(settings, changed)
    assert report.created == []
    assert report.updated == {
        alert.name: [
            f"retention.ms: {alert.retention_ms} -> 3600000",
            f"partitions: {alert.partitions} -> {alert.partitions + 2}",
        ]
    }
    state = describe_topics(make_admin(settings), [alert.name])[alert.name]
    assert state.partitions == alert.partitions + 2
    assert state.config["retention.ms"] == "3600000"

    # back to the original spec: the retention is restored, partitions are never removed
    back = ensure_topics(settings, specs)
    assert back.updated == {alert.name: [f"retention.ms: 3600000 -> {alert.retention_ms}"]}
    assert any("cannot remove partitions" in w for w in back.warnings)
