"""The faust codecs over AvroCodec, used through faust's own codec registry and models."""

from __future__ import annotations

from collections.abc import Iterator

import faust
import pytest
from faust.serializers import codecs

from cxstream.errors import DecodeError, ValidationError
from schemas import load_catalog
from streams.codec import AvroCodec, DecodedEvent
from streams.faust_codec import CODEC_NAME, register_codecs
from streams.registry import EmbeddedRegistry

CATALOG = load_catalog()
CONSENT = {"event_id": "e-1", "occurred_at": 1_780_000_000_000, "customer_id": "C1",
           "consent": "marketing", "granted": True, "channel": "app", "source": "mobile-app"}


@pytest.fixture(scope="module")
def avro() -> Iterator[AvroCodec]:
    codec = AvroCodec(EmbeddedRegistry(CATALOG))
    names = register_codecs(codec)
    yield codec
    for name in names:
        codecs.codecs.pop(name, None)


def test_registers_one_codec_per_event_type(avro: AvroCodec) -> None:
    assert set(codecs.codecs) >= {CODEC_NAME} | {f"{CODEC_NAME}.{n}" for n in CATALOG.names()}


def test_per_type_codec_round_trips_through_faust(avro: AvroCodec) -> None:
    data = codecs.dumps(f"{CODEC_NAME}.consent_changed", CONSENT)
    assert data == avro.encode("consent_changed", CONSENT)
    assert codecs.loads(f"{CODEC_NAME}.consent_changed", data) == CONSENT
    # chained with a faust codec (base64), as faust allows for any codec
    chained = codecs.dumps(f"{CODEC_NAME}.consent_changed|binary", CONSENT)
    assert codecs.loads(f"{CODEC_NAME}.consent_changed|binary", chained) == CONSENT


def test_faust_record_values_are_encoded(avro: AvroCodec) -> None:
    class Consent(faust.Record, serializer=f"{CODEC_NAME}.consent_changed"):
        event_id: str
        occurred_at: int
        customer_id: str
        consent: str
        granted: bool
        channel: str
        source: str

    value = Consent(**CONSENT)
    data = codecs.dumps(f"{CODEC_NAME}.consent_changed", value)
    assert avro.decode(data).record == CONSENT


def test_wrong_type_and_invalid_record(avro: AvroCodec) -> None:
    data = codecs.dumps(f"{CODEC_NAME}.consent_changed", CONSENT)
    with pytest.raises(DecodeError, match="consent_changed schema; this codec reads transaction"):
        codecs.loads(f"{CODEC_NAME}.transaction", data)
    with pytest.raises(ValidationError) as info:
        codecs.dumps(f"{CODEC_NAME}.consent_changed", {**CONSENT, "granted": "yes"})
    assert info.value.field == "granted"


def test_any_type_codec_takes_pairs_and_returns_events(avro: AvroCodec) -> None:
    data = codecs.dumps(CODEC_NAME, ("consent_changed", CONSENT))
    event = codecs.loads(CODEC_NAME, data)
    assert isinstance(event, DecodedEvent)
    assert event.record == CONSENT
    assert codecs.dumps(CODEC_NAME, event) == data
    with pytest.raises(ValidationError, match="pairs or DecodedEvent"):
        codecs.dumps(CODEC_NAME, CONSENT)
