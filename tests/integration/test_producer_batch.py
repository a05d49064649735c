"""``EventProducer.produce_many`` against the real broker.

Semantics checked here: every event of a call is validated, encoded and keyed before any is
handed to librdkafka, so an invalid record anywhere in the call raises ``ValidationError``
(naming the field) and nothing of that call is sent; otherwise every event arrives exactly once,
keyed by the schema's partition key, in the order given per key, including when the local queue
is smaller than the call (poll and retry the rest, never drop).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError

from cxstream.bench.produce import sample_events
from cxstream.errors import ValidationError
from cxstream.settings import Settings
from streams.codec import AvroCodec, build_codec
from streams.kafka_config import confluent_config
from streams.producer import DeliveryReport, EventProducer
from streams.topics import TopicSpec, delete_topics, ensure_topics
from tests.support.services import LocalStack

pytestmark = pytest.mark.integration

EVENT = "channel_interaction"


@pytest.fixture(name="settings")
def settings_fixture(local_stack: LocalStack) -> Iterator[Settings]:
    base = local_stack.settings
    settings = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(
                update={"topic_prefix": f"test-batch-{uuid.uuid4().hex[:10]}"}
            )
        }
    )
    topic = settings.topic(EVENT)
    ensure_topics(
        settings,
        [TopicSpec(topic, settings.kafka.partitions, settings.kafka.replication_factor)],
    )
    try:
        yield settings
    finally:
        delete_topics(settings, [topic])


def _expected_key(record: dict[str, Any]) -> bytes:
    return str(record["customer_id"] or record["anonymous_id"]).encode()


def _consume_all(settings: Settings, codec: AvroCodec, *, expect: int) -> list[tuple[bytes, str]]:
    """(key, event_id) of every event on the topic, reading until ``expect`` plus a quiet spell."""
    consumer = Consumer(
        confluent_config(
            settings,
            **{
                "group.id": f"probe-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            },
        )
    )
    consumer.subscribe([settings.topic(EVENT)])
    seen: list[tuple[bytes, str]] = []
    eof: set[int] = set()
    empty_polls = 0
    try:
        partitions = settings.kafka.partitions
        while empty_polls < 30 and not (len(seen) >= expect and len(eof) == partitions):
            batch = consumer.consume(num_messages=1000, timeout=1.0)
            if not batch:
                empty_polls += 1
                continue
            for msg in batch:
                error = msg.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, error
                    eof.add(msg.partition() or 0)
                    continue
                eof.discard(msg.partition())
                value, key = msg.value(), msg.key()
                assert value is not None
                assert isinstance(key, bytes)
                event = codec.decode(value)
                seen.append((key, str(event.record["event_id"])))
    finally:
        consumer.close()
    return seen


def test_produce_many_delivers_every_event_once_with_its_key(settings: Settings) -> None:
    codec = build_codec(settings)
    records = sample_events(5000, seed=41)
    reports: list[DeliveryReport] = []
    # a queue smaller than the calls: produce_many must wait for room and retry, not drop
    with EventProducer(
        settings, codec, on_delivery=reports.append,
        config={"queue.buffering.max.messages": 700},
    ) as producer:
        assert producer.produce_many(EVENT, records[:3000]) == 3000
        assert producer.produce_many(EVENT, iter(records[3000:])) == 2000
        producer.flush(60)
        assert producer.produced == producer.delivered == len(records)
        assert producer.failed == 0
    assert len(reports) == len(records)
    assert all(r.ok for r in reports)
    assert sorted(r.event_id or "" for r in reports) == sorted(r["event_id"] for r in records)

    seen = _consume_all(settings, codec, expect=len(records))
    assert len(seen) == len(records)  # exactly once: no duplicates, none missing
    expected = {r["event_id"]: _expected_key(r) for r in records}
    assert {event_id: key for key, event_id in seen} == expected
    # per key, the order of the calls is kept
    by_key: dict[bytes, list[str]] = {}
    for key, event_id in seen:
        by_key.setdefault(key, []).append(event_id)
    for key, ids in by_key.items():
        assert ids == [r["event_id"] for r in records if _expected_key(r) == key]


def test_invalid_record_in_the_middle_sends_nothing_of_the_call(settings: Settings) -> None:
    codec = build_codec(settings)
    records = sample_events(100, seed=42)
    bad = list(records)
    bad[50] = bad[50] | {"duration_ms": "long"}
    keyless = list(records)
    keyless[70] = keyless[70] | {"customer_id": None, "anonymous_id": None}
    with EventProducer(settings, codec) as producer:
        with pytest.raises(ValidationError) as caught:
            producer.produce_many(EVENT, bad)
        assert caught.value.field == "duration_ms"
        assert caught.value.schema == EVENT
        assert any("record 50" in note for note in caught.value.__notes__)
        with pytest.raises(ValidationError) as no_key:
            producer.produce_many(EVENT, keyless)
        assert no_key.value.field == "customer_id"
        assert producer.produced == 0
        # the good call afterwards is delivered whole
        producer.produce_many(EVENT, records[:10])
        producer.flush(30)
        assert producer.delivered == 10

    seen = _consume_all(settings, codec, expect=10)
    assert sorted(event_id for _, event_id in seen) == sorted(r["event_id"] for r in records[:10])
