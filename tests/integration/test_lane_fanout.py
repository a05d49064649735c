"""Two processors on one topic in one worker (lane fan-out) and ``AppContext.emit``.

A probe processor (tests/support/fanout_probe.py) has two handlers on ``channel_interaction``;
both emit an ``alert`` per event they take, keyed like the input. Afterwards: handler ``a`` saw
every event once, handler ``b`` every event but the searches (dead-lettered under its own step),
and every emitted event sits on the partition of its input event, i.e. the SDK's producer
(confluent-kafka, murmur2) and Faust's (aiokafka) place a key on the same partition.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from cxstream.bench.produce import sample_events
from cxstream.settings import Settings
from streams.codec import build_codec
from streams.dlq import H_STEP, header_map
from streams.kafka_config import confluent_config
from streams.producer import EventProducer
from tests.integration.test_kafka_roundtrip import (
    CXSTREAM,
    settings_fixture,  # noqa: F401 (the `settings` fixture, shared)
    worker_env,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _consume_all(settings: Settings, topic: str, expected: int, timeout: float) -> list[object]:
    consumer = Consumer(
        confluent_config(
            settings,
            **{
                "group.id": f"{settings.kafka.topic_prefix}-reader-{topic}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            },
        )
    )
    consumer.subscribe([topic])
    messages: list[object] = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            messages.append(message)
        # a little longer: more than expected would be a duplicate
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                messages.append(message)
    finally:
        consumer.close()
    return messages


def test_two_handlers_share_a_lane_and_emit_on_the_input_partition(
    settings: Settings, tmp_path: Path
) -> None:
    events = sample_events(600, seed=11)
    codec = build_codec(settings)
    with EventProducer(settings, codec) as producer:
        producer.produce_many("channel_interaction", events)
        producer.flush(30)
    searches = sum(1 for e in events if e["action"] == "search")
    assert 0 < searches < len(events)

    inputs = _consume_all(settings, settings.topic("channel_interaction"), len(events), 30)
    input_partition = {
        codec.decode(m.value()).record["event_id"]: m.partition()  # type: ignore[attr-defined]
        for m in inputs
    }
    assert len(input_partition) == len(events)

    log = tmp_path / "worker.log"
    env = worker_env(settings, PYTHONPATH=str(REPO))
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [CXSTREAM, "worker", "-p", "tests.support.fanout_probe", "--no-ensure-topics"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        expected = 2 * len(events) - searches
        alerts = _consume_all(settings, settings.topic("alert"), expected, 90)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    levels: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for message in alerts:
        record = codec.decode(message.value()).record  # type: ignore[attr-defined]
        levels[record["level"]] += 1
        seen[record["alert_id"]] += 1
        source_event = record["alert_id"].rsplit("-", 1)[0]
        assert message.partition() == input_partition[source_event], record  # type: ignore[attr-defined]
    tail = log.read_text(errors="replace")[-2000:]
    assert levels == {"info": len(events), "warning": len(events) - searches}, tail
    assert max(seen.values()) == 1

    dead = _consume_all(settings, settings.topic("dlq"), searches, 30)
    steps = Counter(header_map(m.headers()).get(H_STEP) for m in dead)  # type: ignore[attr-defined]
    assert steps == {"probe-b": searches}
