"""Poison pills interleaved with valid events: every pill lands in the dead-letter topic with its
original bytes and the right headers, every valid event is counted exactly once, and the worker
keeps going."""

from __future__ import annotations

import struct
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError

from cxstream.bench.produce import sample_events
from cxstream.settings import Settings
from streams.codec import build_codec
from streams.dlq import (
    H_ERROR_CLASS,
    H_ERROR_FIELD,
    H_ERROR_MESSAGE,
    H_ERROR_REASON,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TIMESTAMP,
    H_SOURCE_TOPIC,
    H_STEP,
    header_map,
)
from streams.kafka_config import confluent_config
from streams.producer import DeliveryReport, EventProducer
from tests.integration.test_kafka_roundtrip import (
    EVENT,
    expected_counts,
    running_worker,
    settings_fixture,  # noqa: F401 (the `settings` fixture, shared)
    stats,
    wait_for_total,
)

pytestmark = pytest.mark.integration


def poison_pills(settings: Settings) -> list[tuple[str, str, bytes | None]]:
    """(name, expected reason, value) of every kind of bad message an input topic can carry."""
    codec = build_codec(settings)
    own_id = codec.registry.latest(EVENT).schema_id
    valid = codec.encode(EVENT, sample_events(1, seed=1)[0])
    transaction = codec.encode(
        "transaction",
        {
            "event_id": str(uuid.uuid4()),
            "occurred_at": int(time.time() * 1000),
            "customer_id": "C0000001",
            "transaction_id": "T1",
            "account_id": "6222000011112222",
            "amount_minor": 1250,
            "direction": "debit",
            "category": "groceries",
        },
    )
    keyless = sample_events(1, seed=2)[0] | {"customer_id": None, "anonymous_id": None}
    return [
        ("wrong magic byte", "bad_magic", b"\x01" + valid[1:]),
        ("unknown schema id", "unknown_schema_id", struct.pack(">bI", 0, 987_654) + valid[5:]),
        ("truncated header", "truncated", valid[:3]),
        ("truncated body", "truncated", valid[: len(valid) // 2]),
        # our header, another schema's body: fails (or would decode to garbage)
        ("body of another schema", "bad_body", struct.pack(">bI", 0, own_id) + transaction[5:]),
        # a well-formed event of another type on this topic
        ("event of another type", "wrong_event_type", transaction),
        ("oversized", "oversized", valid + b"\x00" * (settings.max_event_bytes + 1)),
        ("tombstone", "tombstone", None),
        ("empty value", "empty", b""),
        # decodes, but fails the processor's own check (no partition key)
        ("no partition key", "invalid", _encode_unchecked(codec, keyless)),
    ]


def _encode_unchecked(codec: Any, record: dict[str, Any]) -> bytes:
    # the SDK refuses keyless events, a foreign producer might not: encode directly
    value: bytes = codec.encode(EVENT, record)
    return value


def read_dead_letters(settings: Settings, count: int, timeout: float = 30) -> list[Any]:
    consumer = Consumer(
        confluent_config(
            settings,
            **{
                "group.id": f"dlq-probe-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
            },
        )
    )
    letters: list[Any] = []
    try:
        consumer.subscribe([settings.topic("dlq")])
        deadline = time.monotonic() + timeout
        while len(letters) < count and time.monotonic() < deadline:
            for message in consumer.consume(100, timeout=0.5):
                error = message.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(f"reading dead letters: {error}")
                if error is None:
                    letters.append(message)
        # nothing beyond the expected letters may show up
        letters.extend(m for m in consumer.consume(100, timeout=2.0) if m.error() is None)
    finally:
        consumer.close()
    return letters


def test_every_poison_pill_is_dead_lettered_and_every_valid_event_counted_once(
    settings: Settings, tmp_path: Path
) -> None:
    pills = poison_pills(settings)
    valid = sample_events(400, seed=77)
    topic = settings.topic(EVENT)
    reports: dict[str, DeliveryReport] = {}

    def remember(report: DeliveryReport) -> None:
        reports[report.event_id or ""] = report

    with EventProducer(settings, build_codec(settings), on_delivery=remember) as producer:
        # one key: all on one partition, each pill between two valid events, in order
        chunk = len(valid) // (len(pills) + 1)
        for i, (name, _, value) in enumerate(pills):
            for record in valid[i * chunk : (i + 1) * chunk]:
                producer.produce(EVENT, record, key=b"same-key")
            producer.produce_encoded(topic, value, key=f"pill-{i}".encode(), event_id=name)
        for record in valid[len(pills) * chunk :]:
            producer.produce(EVENT, record, key=b"same-key")
        producer.flush(30)
    assert producer.failed == 0

    with running_worker(settings, tmp_path / "worker.log"):
        counted = wait_for_total(settings, len(valid), tmp_path / "worker.log")
        letters = read_dead_letters(settings, len(pills))
        # the worker kept going after the pills: a later valid event is counted as well
        late = sample_events(1, seed=78)
        with EventProducer(settings, build_codec(settings)) as producer:
            producer.produce(EVENT, late[0])
        final = wait_for_total(settings, len(valid) + 1, tmp_path / "worker.log")
        dead = stats(settings)["dead_letters"]

    assert counted["total"] == len(valid)
    assert counted["by_channel"] == expected_counts(valid)
    assert final["by_channel"] == expected_counts(valid + late)

    assert len(letters) == len(pills), [header_map(m.headers()) for m in letters]
    by_key = {m.key(): m for m in letters}
    for i, (name, reason, value) in enumerate(pills):
        letter = by_key[f"pill-{i}".encode()]
        headers = header_map(letter.headers())
        original = reports[name]
        assert letter.value() == value, name  # the original bytes, unchanged
        assert headers[H_ERROR_REASON] == reason, (name, headers)
        assert headers[H_SOURCE_TOPIC] == topic
        assert int(headers[H_SOURCE_PARTITION]) == original.partition
        assert int(headers[H_SOURCE_OFFSET]) == original.offset
        assert int(headers[H_SOURCE_TIMESTAMP]) > 0
        assert headers[H_STEP] == "channel_counts"
        assert headers[H_ERROR_CLASS] == (
            "ValidationError" if reason == "invalid" else "DecodeError"
        )
        assert headers[H_ERROR_MESSAGE]
        if reason == "invalid":
            assert headers[H_ERROR_FIELD] == "customer_id"

    assert dead["total"] == len(pills)
    assert dead["by_reason"] == dict(Counter(reason for _, reason, _ in pills))
