"""Producer SDK without a broker: validation before sending, keys, delivery failures, backpressure.

The producer is the real confluent-kafka client pointed at a closed port, so every delivery
fails the way it does when Kafka is down (after ``message.timeout.ms``).
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from cxstream.bench.produce import sample_events
from cxstream.errors import ServiceError, ValidationError
from cxstream.settings import Settings
from streams.codec import build_codec
from streams.producer import DeliveryError, DeliveryReport, EventProducer, partition_key

EVENT = "channel_interaction"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed


@pytest.fixture
def settings() -> Settings:
    base = Settings()
    kafka = base.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{_closed_port()}"})
    return base.model_copy(update={"kafka": kafka})


def producer(settings: Settings, **config: Any) -> EventProducer:
    reports: list[DeliveryReport] = []
    made = EventProducer(
        settings,
        build_codec(settings),
        on_delivery=reports.append,
        config={"message.timeout.ms": 800, "log_level": 0, **config},
    )
    made.reports = reports  # type: ignore[attr-defined]
    return made


def test_invalid_record_raises_naming_the_field_before_anything_is_queued(
    settings: Settings,
) -> None:
    sdk = producer(settings)
    record = sample_events(1)[0] | {"duration_ms": "long"}
    with pytest.raises(ValidationError) as caught:
        sdk.produce(EVENT, record)
    assert caught.value.field == "duration_ms"
    assert caught.value.schema == EVENT
    assert sdk.produced == 0
    assert sdk.in_flight == 0
    sdk.close(timeout=1)


def test_unknown_field_and_oversized_event_are_refused(settings: Settings) -> None:
    sdk = producer(settings)
    with pytest.raises(ValidationError) as unknown:
        sdk.produce(EVENT, sample_events(1)[0] | {"colour": "red"})
    assert unknown.value.field == "colour"
    huge = sample_events(1)[0] | {"topic": "x" * (settings.max_event_bytes + 1)}
    with pytest.raises(ValidationError, match="bytes"):
        sdk.produce(EVENT, huge)
    assert sdk.in_flight == 0
    sdk.close(timeout=1)


def test_partition_key_is_the_first_non_null_field_of_the_schema() -> None:
    fields = ("customer_id", "anonymous_id")
    assert partition_key(EVENT, fields, {"customer_id": "C1", "anonymous_id": "a"}) == "C1"
    assert partition_key(EVENT, fields, {"customer_id": None, "anonymous_id": "a"}) == "a"
    with pytest.raises(ValidationError) as caught:
        partition_key(EVENT, fields, {"customer_id": None, "anonymous_id": None})
    assert caught.value.field == "customer_id"


def test_keyless_event_is_refused_by_the_sdk(settings: Settings) -> None:
    sdk = producer(settings)
    with pytest.raises(ValidationError) as caught:
        sdk.produce(EVENT, sample_events(1)[0] | {"customer_id": None, "anonymous_id": None})
    assert caught.value.field == "customer_id"
    assert sdk.produced == 0
    sdk.close(timeout=1)


def test_undelivered_events_reach_the_callback_and_make_flush_raise(settings: Settings) -> None:
    sdk = producer(settings)
    records = sample_events(3, seed=3)
    for record in records:
        sdk.produce(EVENT, record)
    with pytest.raises(DeliveryError) as caught:
        sdk.flush(10)
    assert sdk.failed == 3
    assert sdk.delivered == 0
    assert {r.event_id for r in caught.value.failed} == {r["event_id"] for r in records}
    reports = sdk.reports  # type: ignore[attr-defined]
    assert [r.ok for r in reports] == [False, False, False]
    assert all(r.topic == settings.topic(EVENT) for r in reports)
    # failures were reported once; the next flush has nothing left to complain about
    assert sdk.flush(1) == 0


def test_full_local_queue_blocks_instead_of_dropping(settings: Settings) -> None:
    # room for 5 events: the other 15 wait in produce() until earlier ones time out
    sdk = producer(settings, **{"queue.buffering.max.messages": 5, "message.timeout.ms": 300})
    for record in sample_events(20, seed=4):
        sdk.produce(EVENT, record)
    assert sdk.produced == 20
    with pytest.raises(DeliveryError):
        sdk.flush(10)
    assert sdk.failed == 20  # every one accounted for: none silently dropped


def test_context_manager_flushes_and_closes(settings: Settings) -> None:
    with pytest.raises(DeliveryError), producer(settings) as sdk:
        sdk.produce(EVENT, sample_events(1)[0])
    assert sdk.failed == 1
    with pytest.raises(ServiceError, match="closed"):
        sdk.produce(EVENT, sample_events(1)[0])


def test_produce_many_validates_everything_before_queueing_anything(settings: Settings) -> None:
    sdk = producer(settings)
    records = sample_events(10, seed=5)
    records[6] = records[6] | {"duration_ms": "long"}
    with pytest.raises(ValidationError) as caught:
        sdk.produce_many(EVENT, records)
    assert caught.value.field == "duration_ms"
    assert any("record 6" in note for note in caught.value.__notes__)
    assert sdk.produced == 0
    assert sdk.in_flight == 0
    sdk.close(timeout=1)


def test_produce_many_waits_for_room_and_reports_every_failure(settings: Settings) -> None:
    # room for 5 events: produce_batch refuses the rest, which are retried until queued
    sdk = producer(settings, **{"queue.buffering.max.messages": 5, "message.timeout.ms": 300})
    records = sample_events(20, seed=6)
    assert sdk.produce_many(EVENT, records) == 20
    assert sdk.produced == 20
    with pytest.raises(DeliveryError) as caught:
        sdk.flush(10)
    assert sdk.failed == 20
    assert {r.event_id for r in caught.value.failed} == {r["event_id"] for r in records}


def test_failures_are_reported_without_a_callback_too(settings: Settings) -> None:
    # no on_delivery: librdkafka reports failures only; counts stay exact after flush
    sdk = EventProducer(
        settings, build_codec(settings), config={"message.timeout.ms": 500, "log_level": 0}
    )
    records = sample_events(4, seed=8)
    sdk.produce(EVENT, records[0])
    sdk.produce_many(EVENT, records[1:])
    with pytest.raises(DeliveryError) as caught:
        sdk.flush(10)
    assert (sdk.produced, sdk.failed, sdk.delivered, sdk.in_flight) == (4, 4, 0, 0)
    assert {r.event_id for r in caught.value.failed} == {r["event_id"] for r in records}
    sdk.close(timeout=1)
