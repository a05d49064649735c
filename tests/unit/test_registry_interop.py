"""Interop with Confluent's own client library, through our registry server.

confluent-kafka's ``AvroSerializer``/``AvroDeserializer`` (what Kafka tools and other teams'
services use) talk to ``cxstream registry serve``: bytes our codec writes are read by them and
bytes they write are read by our codec. The server runs in-process on a free loopback port, so
these are unit tests (about half a second); no external service is involved.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from cxstream.bench.codec import sample_records
from cxstream.settings import Settings
from schemas import load_catalog
from streams.codec import AvroCodec
from streams.registry import EmbeddedRegistry
from streams.registry_server import running_server

CATALOG = load_catalog()
SETTINGS = Settings()


@pytest.fixture(scope="module")
def confluent() -> Iterator[SchemaRegistryClient]:
    with running_server(SETTINGS) as url:
        yield SchemaRegistryClient({"url": url})


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    return AvroCodec(EmbeddedRegistry(CATALOG))


def context(name: str) -> SerializationContext:
    return SerializationContext(SETTINGS.topic(name), MessageField.VALUE)


def as_millis(value: Any) -> Any:
    """Confluent's deserializer applies logical types: turn its datetimes back into millis."""
    if isinstance(value, datetime):
        return round((value - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000)
    return value


def test_confluent_deserializer_reads_our_bytes(confluent: SchemaRegistryClient,
                                                codec: AvroCodec) -> None:
    deserializer = AvroDeserializer(confluent)
    for name, record in sample_records(300, seed=21):
        read = deserializer(codec.encode(name, record), context(name))
        assert {k: as_millis(v) for k, v in read.items()} == record, name


def test_our_codec_reads_confluent_serializer_bytes(confluent: SchemaRegistryClient,
                                                    codec: AvroCodec) -> None:
    serializers = {
        name: AvroSerializer(confluent, CATALOG.latest(name).canonical,
                             conf={"auto.register.schemas": False, "use.latest.version": True})
        for name in CATALOG.names()
    }
    for name, record in sample_records(300, seed=22):
        data = serializers[name](record, context(name))
        assert data[1:5] == CATALOG.latest(name).schema_id.to_bytes(4, "big")
        event = codec.decode(data)
        assert (event.name, event.record) == (name, record)


def test_auto_registering_an_old_version_gets_its_locked_id(confluent: SchemaRegistryClient,
                                                           codec: AvroCodec) -> None:
    v1 = CATALOG.versions("channel_interaction")[0]
    serializer = AvroSerializer(confluent, v1.canonical, conf={"auto.register.schemas": True})
    record = {"event_id": "e", "occurred_at": 1_780_000_000_000, "customer_id": None,
              "anonymous_id": "anon-1", "channel": "app", "action": "page_view", "topic": "",
              "session_id": None, "duration_ms": 5, "resolved": None, "search_query": None,
              "source": "legacy-app"}
    data = serializer(record, context("channel_interaction"))
    assert data[1:5] == v1.schema_id.to_bytes(4, "big")
    event = codec.decode(data)  # v1 bytes, read as v2: the new fields take their defaults
    assert event.record == {**record, "campaign_id": None, "locale": None}
