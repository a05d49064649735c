"""``cxstream simulate`` into a real Kafka: what was generated is what lands on each topic."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from cxstream.settings import Settings
from cxstream.simulate import ListLabelSink, SimulationConfig, generate, parse_start
from cxstream.simulate.config import HOUR_MS
from cxstream.simulate.publish import publish_to_kafka
from streams.codec import build_codec
from streams.kafka_config import confluent_config
from streams.topics import INPUT_EVENTS, delete_topics, ensure_topics, platform_topics
from tests.support.services import LocalStack

pytestmark = pytest.mark.integration

CONFIG = SimulationConfig(
    start_ms=parse_start("2026-12-01T09:00:00+08:00"),
    duration_ms=2 * HOUR_MS,
    customers=150,
    staff=20,
    seed=17,
    feedback_per_visit=0.2,
    erasure_per_customer_per_day=0.05,
)


@pytest.fixture
def settings(local_stack: LocalStack) -> Iterator[Settings]:
    """The stack's settings with a topic prefix of this test's own, topics created."""
    base = local_stack.settings
    prefix = f"test-sim-{uuid.uuid4().hex[:10]}"
    settings = base.model_copy(
        update={"kafka": base.kafka.model_copy(update={"topic_prefix": prefix})}
    )
    specs = platform_topics(settings)
    ensure_topics(settings, specs)
    try:
        yield settings
    finally:
        delete_topics(settings, [spec.name for spec in specs])


def _consume(settings: Settings, expected_total: int, timeout_s: float = 60.0) -> list[tuple]:
    consumer = Consumer(
        confluent_config(
            settings,
            **{
                "group.id": f"test-sim-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            },
        )
    )
    # every partition assigned explicitly from the start: a group subscription can miss a
    # partition of a just-created topic until its next metadata refresh (seen once in CI)
    topics = [settings.topic(name) for name in INPUT_EVENTS]
    metadata = consumer.list_topics(timeout=10)
    consumer.assign(
        [
            TopicPartition(topic, partition, OFFSET_BEGINNING)
            for topic in topics
            for partition in metadata.topics[topic].partitions
        ]
    )
    messages: list[tuple] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < expected_total and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=5000, timeout=1.0):
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, error
                    continue
                messages.append((message.topic(), message.key(), message.value()))
        # nothing beyond what was published shows up a little later either
        messages.extend(
            (m.topic(), m.key(), m.value())
            for m in consumer.consume(num_messages=100, timeout=1.0)
            if m.error() is None
        )
    finally:
        consumer.close()
    return messages


def test_simulated_traffic_lands_on_its_topics(settings: Settings) -> None:
    labels = ListLabelSink()
    generated = list(generate(CONFIG, ListLabelSink()))
    expected = Counter(settings.topic(name) for name, _ in generated)

    report = publish_to_kafka(settings, CONFIG, labels=labels)
    assert report.sent == len(generated)
    assert labels.labels  # scenarios were injected and labelled

    messages = _consume(settings, len(generated))
    assert Counter(topic for topic, _, _ in messages) == expected

    codec = build_codec(settings)
    sent_ids = {record["event_id"] for _, record in generated}
    received_ids = set()
    for topic, key, value in messages:
        event = codec.decode(value)
        assert settings.topic(event.name) == topic
        received_ids.add(event.record["event_id"])
        # keyed by the schema's partition key (the first non-null of its fields)
        fields = codec.registry.latest(event.name).partition_key
        assert key.decode() == next(str(event.record[f]) for f in fields if event.record[f])
    assert received_ids == sent_ids
