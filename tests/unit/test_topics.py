"""The declarative topic list of the platform."""

from __future__ import annotations

import pytest

from cxstream.errors import ConfigurationError
from cxstream.settings import Settings
from schemas import load_catalog
from streams.topics import (
    DLQ_MAX_MESSAGE_BYTES,
    INPUT_EVENTS,
    INPUT_MAX_MESSAGE_BYTES,
    OUTPUT_EVENTS,
    PROFILE_INTERNAL_TOPICS,
    SECURITY_ERASURES,
    SECURITY_LOGIN_FAILURES,
    TopicSpec,
    platform_topics,
)


def test_every_event_type_has_one_topic_plus_the_dlq_and_internal_topics() -> None:
    settings = Settings()
    names = [spec.name for spec in platform_topics(settings)]
    assert len(names) == len(set(names))
    assert set(INPUT_EVENTS) | set(OUTPUT_EVENTS) == set(load_catalog().names())
    assert set(INPUT_EVENTS).isdisjoint(OUTPUT_EVENTS)
    internal = (*PROFILE_INTERNAL_TOPICS, SECURITY_LOGIN_FAILURES, SECURITY_ERASURES)
    expected = (*INPUT_EVENTS, *OUTPUT_EVENTS, "dlq", *internal)
    assert set(names) == {settings.topic(n) for n in expected}


def test_specs_follow_the_settings() -> None:
    base = Settings()
    kafka = base.kafka.model_copy(
        update={
            "topic_prefix": "bank7",
            "partitions": 12,
            "replication_factor": 3,
            "min_insync_replicas": 2,
            "input_retention_ms": 86_400_000,
        }
    )
    specs = {s.name: s for s in platform_topics(base.model_copy(update={"kafka": kafka}))}
    transaction = specs["bank7.transaction"]
    assert (transaction.partitions, transaction.replication_factor) == (12, 3)
    assert transaction.config() == {
        "cleanup.policy": "delete",
        "retention.ms": "86400000",
        "min.insync.replicas": "2",
        "max.message.bytes": str(INPUT_MAX_MESSAGE_BYTES),
    }
    profile = specs["bank7.profile_snapshot"].config()
    assert profile["cleanup.policy"] == "compact"
    assert profile["retention.ms"] == "-1"
    dlq = specs["bank7.dlq"].config()
    assert dlq["retention.ms"] == str(kafka.dlq_retention_ms)
    # a dead letter is an input message plus headers: the DLQ must take the largest input
    assert int(dlq["max.message.bytes"]) == DLQ_MAX_MESSAGE_BYTES > INPUT_MAX_MESSAGE_BYTES


def test_min_insync_is_capped_by_the_replication_factor() -> None:
    base = Settings()
    kafka = base.kafka.model_copy(update={"replication_factor": 1, "min_insync_replicas": 2})
    for spec in platform_topics(base.model_copy(update={"kafka": kafka})):
        assert spec.config()["min.insync.replicas"] == "1"


def test_impossible_specs_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"min\.insync\.replicas=3"):
        TopicSpec("t", partitions=1, replication_factor=2, min_insync_replicas=3)
    with pytest.raises(ConfigurationError, match="partitions"):
        TopicSpec("t", partitions=0)


def test_extra_configs_are_passed_by_kafka_name() -> None:
    spec = TopicSpec("t", 3, configs={"segment.ms": "3600000", "compression.type": "zstd"})
    assert spec.config() == {
        "cleanup.policy": "delete",
        "segment.ms": "3600000",
        "compression.type": "zstd",
    }
