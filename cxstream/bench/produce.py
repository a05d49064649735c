"""``cxstream bench produce``: the producer SDK's rate against raw limits measured in the same run.

Figures (events/s, all on one topic of ``settings.kafka.partitions`` partitions):

- ``sdk``: ``EventProducer.produce`` (validate + encode + key + send) until every event is
  acknowledged by the broker (``flush``), the number frontends get;
- ``sdk_many``: ``EventProducer.produce_many`` (the same work, validated and encoded all first,
  then handed over with ``produce_batch``) in calls of ``many_chunk`` (10000) events, to its own
  topic, also until every event is acknowledged;
- ``encode_only``: ``codec.encode`` alone (how much of the SDK's cost is the codec);
- ``send_only``: the SDK sending pre-encoded bytes (``produce_encoded``), i.e. the Kafka side;
- ``raw_consume_decode``: confluent-kafka consume + ``codec.decode`` of the same events, the raw
  reference a consumer can at best reach on this machine.

Options: ``events`` (200000), ``many_chunk`` (10000), ``linger_ms``, ``compression``,
``batch_bytes`` (override the settings for a sweep), ``keep_topic`` (false).
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException

from cxstream.errors import ServiceError
from cxstream.settings import Settings
from streams.codec import AvroCodec
from streams.kafka_config import confluent_config
from streams.producer import EventProducer, producer_tuning
from streams.registry import EmbeddedRegistry
from streams.topics import TopicSpec, delete_topics, ensure_topics

EVENT = "channel_interaction"
_CHANNELS = ("web", "app", "social", "chat", "phone", "branch", "atm")
_ACTIONS = ("information_request", "service_request", "page_view", "screen_view", "search")


def sample_events(count: int, *, seed: int = 7) -> list[dict[str, Any]]:
    """Realistic ``channel_interaction`` records (a tenth anonymous), generated before timing."""
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    events = []
    for i in range(count):
        anonymous = rng.random() < 0.1
        events.append(
            {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "occurred_at": now - (count - i),
                "customer_id": None if anonymous else f"C{rng.randrange(1_000_000):07d}",
                "anonymous_id": f"anon-{rng.randrange(1 << 30):x}" if anonymous else None,
                "channel": rng.choice(_CHANNELS),
                "action": rng.choice(_ACTIONS),
                "topic": rng.choice(("rates", "card_block", "mortgage", "fees", "login")),
                "session_id": f"s-{rng.randrange(1 << 24):x}",
                "duration_ms": rng.randrange(50, 60_000),
                "resolved": rng.choice((None, True, False)),
                "search_query": None,
                "source": rng.choice(("web-portal", "mobile-app", "ivr", "branch-crm")),
            }
        )
    return events


def _with_overrides(settings: Settings, prefix: str, options: dict[str, Any]) -> Settings:
    update: dict[str, Any] = {"topic_prefix": prefix}
    for option, field in (
        ("linger_ms", "producer_linger_ms"),
        ("compression", "producer_compression"),
        ("batch_bytes", "producer_batch_bytes"),
    ):
        if option in options:
            update[field] = options[option]
    return settings.model_copy(update={"kafka": settings.kafka.model_copy(update=update)})


def run(settings: Settings, events: int = 200_000, **options: Any) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    settings = _with_overrides(settings, f"{settings.kafka.topic_prefix}-bench-{run_id}", options)
    codec = AvroCodec(EmbeddedRegistry(), max_event_bytes=settings.max_event_bytes)
    records = sample_events(events)
    topic = settings.topic(EVENT)
    send_topic = settings.topic(f"{EVENT}-send-only")
    many_topic = settings.topic(f"{EVENT}-many")
    specs = [
        TopicSpec(name, settings.kafka.partitions, settings.kafka.replication_factor)
        for name in (topic, send_topic, many_topic)
    ]
    ensure_topics(settings, specs)
    try:
        encode_rate = _encode_rate(codec, records[: min(events, 50_000)])
        sdk = _sdk_rate(settings, codec, records)
        many = _sdk_many_rate(
            settings, codec, many_topic, records, int(options.get("many_chunk", 10_000))
        )
        encoded = [codec.encode(EVENT, r) for r in records]
        send = _send_rate(settings, codec, send_topic, encoded)
        raw = _consume_decode_rate(settings, codec, topic, events)
    finally:
        if not options.get("keep_topic"):
            delete_topics(settings, [s.name for s in specs])
    return {
        "events": events,
        "event_bytes_avg": round(sum(map(len, encoded)) / len(encoded), 1),
        "sdk_events_per_s": sdk["rate"],
        "sdk_seconds": sdk["seconds"],
        "sdk_delivered": sdk["delivered"],
        "sdk_many_events_per_s": many["rate"],
        "sdk_many_seconds": many["seconds"],
        "sdk_many_delivered": many["delivered"],
        "encode_only_events_per_s": encode_rate,
        "send_only_events_per_s": send,
        "raw_consume_decode_events_per_s": raw,
        "sdk_vs_raw_consume_decode": round(sdk["rate"] / raw, 3),
        "sdk_many_vs_raw_consume_decode": round(many["rate"] / raw, 3),
        "sdk_many_vs_sdk": round(many["rate"] / sdk["rate"], 3),
        "target_sdk_events_per_s": 100_000,
        "settings": {
            "bootstrap_servers": settings.kafka.bootstrap_servers,
            "security_protocol": settings.kafka.security_protocol,
            "partitions": settings.kafka.partitions,
            "max_event_bytes": settings.max_event_bytes,
            "producer": producer_tuning(settings),
        },
    }


def _encode_rate(codec: AvroCodec, records: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for record in records:
        codec.encode(EVENT, record)
    return round(len(records) / (time.perf_counter() - started))


def _sdk_rate(
    settings: Settings, codec: AvroCodec, records: list[dict[str, Any]]
) -> dict[str, Any]:
    producer = EventProducer(settings, codec)
    _warm_up(producer, settings.topic(EVENT))
    started = time.perf_counter()
    for record in records:
        producer.produce(EVENT, record)
    producer.flush(120)
    seconds = time.perf_counter() - started
    producer.close()
    return {
        "rate": round(len(records) / seconds),
        "seconds": round(seconds, 3),
        "delivered": producer.delivered - 1,  # minus the warm-up event
    }


def _sdk_many_rate(
    settings: Settings,
    codec: AvroCodec,
    topic: str,
    records: list[dict[str, Any]],
    chunk: int,
) -> dict[str, Any]:
    producer = EventProducer(settings, codec)
    _warm_up(producer, topic)
    started = time.perf_counter()
    for start in range(0, len(records), chunk):
        producer.produce_many(EVENT, records[start : start + chunk], topic=topic)
    producer.flush(120)
    seconds = time.perf_counter() - started
    producer.close()
    return {
        "rate": round(len(records) / seconds),
        "seconds": round(seconds, 3),
        "delivered": producer.delivered - 1,  # minus the warm-up event
    }


def _send_rate(settings: Settings, codec: AvroCodec, topic: str, encoded: list[bytes]) -> float:
    producer = EventProducer(settings, codec)
    _warm_up(producer, topic)
    started = time.perf_counter()
    for i, value in enumerate(encoded):
        producer.produce_encoded(topic, value, key=str(i % 4096))
    producer.flush(120)
    seconds = time.perf_counter() - started
    producer.close()
    return round(len(encoded) / seconds)


def _warm_up(producer: EventProducer, topic: str) -> None:
    # connection set-up and the idempotent producer id request are not part of the rate; the
    # warm-up message is a tombstone-free marker that consumers of the bench topic skip
    producer.produce_encoded(topic, b"warm-up", key=b"warm-up")
    producer.flush(30)


def _consume_decode_rate(settings: Settings, codec: AvroCodec, topic: str, events: int) -> float:
    consumer = Consumer(
        confluent_config(settings)
        | {
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
        }
    )
    consumer.subscribe([topic])
    decoded = 0
    started: float | None = None
    deadline = time.monotonic() + 120
    try:
        while decoded < events:
            if time.monotonic() > deadline:
                raise ServiceError(f"bench consume: only {decoded}/{events} events in 120 s")
            batch = consumer.consume(num_messages=10_000, timeout=1.0)
            if started is None and batch:
                started = time.perf_counter()  # group join and first fetch excluded
            for msg in batch:
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise ServiceError(f"bench consume from {topic}: {error}")
                value = msg.value()
                if value is None or value == b"warm-up":
                    continue
                codec.decode(value)
                decoded += 1
    except KafkaException as exc:
        raise ServiceError(f"bench consume from {topic}: {exc}") from exc
    finally:
        consumer.close()
    assert started is not None
    return round(decoded / (time.perf_counter() - started))
