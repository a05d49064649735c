"""Our topics through a real Kafka, read and written by Confluent's own Avro serdes.

A team or tool outside cxstream that points confluent-kafka's ``AvroDeserializer`` at
``cxstream registry serve`` reads what our producers wrote, and what its ``AvroSerializer``
writes our codec reads: same wire format, same ids, over a real broker. (The same interop
without Kafka, byte for byte, is in tests/unit/test_registry_interop.py.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from cxstream.bench.codec import sample_records
from cxstream.settings import Settings
from schemas import load_catalog
from streams.codec import build_codec
from streams.kafka_config import confluent_config
from streams.registry_server import running_server
from streams.topics import TopicSpec, delete_topics, ensure_topics
from tests.support.services import LocalStack

pytestmark = pytest.mark.integration

NAMES = ("channel_interaction", "transaction", "access_event")


@pytest.fixture
def settings(local_stack: LocalStack) -> Iterator[Settings]:
    base = local_stack.settings
    settings = base.model_copy(update={"kafka": base.kafka.model_copy(
        update={"topic_prefix": f"test-sr-{uuid.uuid4().hex[:10]}"})})
    topics = [settings.topic(name) for name in NAMES]
    ensure_topics(settings, [TopicSpec(name=t, partitions=2) for t in topics])
    try:
        yield settings
    finally:
        delete_topics(settings, topics)


def consume(settings: Settings, topics: list[str], count: int) -> list[tuple[str, bytes]]:
    consumer = Consumer(confluent_config(settings, **{
        "group.id": f"test-sr-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest",
        "enable.auto.commit": False}))
    consumer.subscribe(topics)
    out: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + 60
    try:
        while len(out) < count and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=1.0):
                if message.error() is None:
                    out.append((message.topic(), message.value()))
    finally:
        consumer.close()
    return out


def as_millis(value: Any) -> Any:
    if isinstance(value, datetime):
        return round((value - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000)
    return value


def test_confluent_serdes_and_our_codec_share_topics(settings: Settings) -> None:
    codec = build_codec(settings)
    catalog = load_catalog()
    records = [(n, r) for n, r in sample_records(1500, seed=31) if n in NAMES][:600]
    with running_server(settings) as url:
        registry = SchemaRegistryClient({"url": url})
        producer = Producer(confluent_config(settings))
        for name, record in records:  # our codec writes...
            producer.produce(settings.topic(name), codec.encode(name, record))
        assert producer.flush(30) == 0
        deserializer = AvroDeserializer(registry)  # ...Confluent's deserializer reads
        got = consume(settings, [settings.topic(n) for n in NAMES], len(records))
        assert len(got) == len(records)
        read = sorted(
            (topic, str(sorted((k, str(as_millis(v))) for k, v in deserializer(
                value, SerializationContext(topic, MessageField.VALUE)).items())))
            for topic, value in got)
        sent = sorted((settings.topic(n), str(sorted((k, str(v)) for k, v in r.items())))
                      for n, r in records)
        assert read == sent

        serializers = {n: AvroSerializer(registry, catalog.latest(n).canonical, conf={
            "auto.register.schemas": False, "use.latest.version": True}) for n in NAMES}
        extra = f"{settings.kafka.topic_prefix}.extra"
        ensure_topics(settings, [TopicSpec(name=extra, partitions=1)])
        try:
            for name, record in records[:200]:  # Confluent's serializer writes...
                producer.produce(extra, serializers[name](
                    record, SerializationContext(settings.topic(name), MessageField.VALUE)))
            assert producer.flush(30) == 0
            events = [codec.decode(value) for _, value in consume(settings, [extra], 200)]
        finally:
            delete_topics(settings, [extra])
    assert sorted((e.name, e.record["event_id"]) for e in events) == sorted(
        (n, r["event_id"]) for n, r in records[:200])  # ...our codec reads
    by_id = {r["event_id"]: r for _, r in records[:200]}
    assert all(e.record == by_id[e.record["event_id"]] for e in events)
