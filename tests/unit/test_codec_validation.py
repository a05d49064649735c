"""Validation: the compiled checks reject exactly what the rules reject, and say where and why."""

from __future__ import annotations

import random
from typing import Any

import pytest
from fastavro.validation import validate as fastavro_validate

from cxstream.bench.codec import sample_records
from cxstream.errors import ValidationError
from schemas import load_catalog
from streams.codec import AvroCodec, explain
from streams.registry import EmbeddedRegistry

CATALOG = load_catalog()


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    return AvroCodec(EmbeddedRegistry(CATALOG))


def rejected(codec: AvroCodec, name: str, record: Any) -> ValidationError:
    with pytest.raises(ValidationError) as encoding:
        codec.encode(name, record)
    with pytest.raises(ValidationError) as validating:
        codec.validate(name, record)
    assert (encoding.value.field, str(encoding.value)) == (
        validating.value.field, str(validating.value))
    return encoding.value


def interaction(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": "e-1", "occurred_at": 1_780_000_000_000, "customer_id": "C1",
        "channel": "web", "action": "search",
    }
    record.update(changes)
    return record


def test_wrong_type_names_field_expected_type_and_value(codec: AvroCodec) -> None:
    error = rejected(codec, "channel_interaction", interaction(customer_id=42))
    assert error.schema == "channel_interaction"
    assert error.field == "customer_id"
    assert "null or string" in str(error)
    assert "int 42" in str(error)


def test_missing_required_field(codec: AvroCodec) -> None:
    record = interaction()
    del record["channel"]
    error = rejected(codec, "channel_interaction", record)
    assert error.field == "channel"
    assert "required" in str(error)


def test_unknown_field_is_rejected(codec: AvroCodec) -> None:
    error = rejected(codec, "channel_interaction", interaction(campaign="spring"))
    assert error.field == "campaign"
    assert "not in" in str(error)


def test_enum_symbol_lists_the_symbols(codec: AvroCodec) -> None:
    error = rejected(codec, "channel_interaction", interaction(channel="fax"))
    assert error.field == "channel"
    assert "web, app, social, chat, phone, branch, atm" in str(error)
    assert "'fax'" in str(error)


def test_unhashable_enum_value(codec: AvroCodec) -> None:
    assert rejected(codec, "channel_interaction", interaction(channel=["web"])).field == "channel"


@pytest.mark.parametrize(
    ("name", "record", "field", "words"),
    [
        ("access_event", {"record_count": 2**31}, "record_count", "int in [-2147483648"),
        ("access_event", {"amount_minor": 2**63}, "amount_minor", "long in [-9223372036854775808"),
        ("access_event", {"record_count": True}, "record_count", "got bool True"),
        ("access_event", {"record_count": 1.0}, "record_count", "got float 1.0"),
        ("access_event", {"geo_lat": "31.2"}, "geo_lat", "null or double"),
        ("chat_session", {"bot_only": 1}, "bot_only", "expected boolean"),
        ("transaction", {"occurred_at": "2027-01-01"}, "occurred_at", "timestamp-millis"),
        ("transaction", {"merchant": "\ud800"}, "merchant", "UTF-8"),
    ],
)
def test_numbers_booleans_and_strings(codec: AvroCodec, name: str, record: dict[str, Any],
                                      field: str, words: str) -> None:
    base = next(r for n, r in sample_records(500, seed=2) if n == name)
    error = rejected(codec, name, {**base, **record})
    assert error.field == field
    assert words in str(error), str(error)


def test_paths_into_arrays_maps_and_nested_records(codec: AvroCodec) -> None:
    item = {"product_id": "P1", "rank": 1, "score": 0.5, "propensity": 0.1, "reason_code": "x"}
    reco = {"event_id": "e", "occurred_at": 1, "customer_id": "C", "recommendation_id": "r",
            "items": [item, item, {**item, "product_id": 7}], "policy": "greedy"}
    error = rejected(codec, "recommendation", reco)
    assert error.field == "items.2.product_id"
    assert "got int 7" in str(error)
    del reco["items"][2]["product_id"]
    assert rejected(codec, "recommendation", reco).field == "items.2.product_id"
    reco["items"][2] = "not a record"
    assert "mapping" in str(rejected(codec, "recommendation", reco))

    profile = {"event_id": "e", "occurred_at": 1, "customer_id": "C", "version": 1,
               "channel_counts": {"web": 3, "app": "4"}}
    assert rejected(codec, "profile_snapshot", profile).field == "channel_counts.app"
    flag = {"event_id": "e", "occurred_at": 1, "flag_id": "f", "principal_id": "p",
            "principal_type": "staff", "severity": "high", "rule": "r", "explanation": "x",
            "evidence_event_ids": ["a", None]}
    assert rejected(codec, "security_flag", flag).field == "evidence_event_ids.1"


def test_record_that_is_not_a_mapping(codec: AvroCodec) -> None:
    error = rejected(codec, "transaction", ["not", "a", "record"])
    assert error.field == ""
    assert "mapping" in str(error)


def test_valid_records_pass_validate(codec: AvroCodec) -> None:
    for name, record in sample_records(500, seed=4):
        assert codec.validate(name, record) is None


_WRONG = [None, 0, -1, 2**40, 2**70, True, 1.5, "", "web", "zz", b"bytes", [], ["x"], {},
          {"k": 1}, object()]


def test_compiled_checks_agree_with_the_rules_and_fastavro(codec: AvroCodec) -> None:
    """Each field of real records swapped for wrong-ish values: the compiled check, the
    plain rules (explain) and fastavro's validator give the same verdict."""
    rng = random.Random(17)
    checked = 0
    for name, record in sample_records(400, seed=9):
        sv = CATALOG.latest(name)
        for field in rng.sample(sorted(record), 3):
            mutated = {**record, field: rng.choice(_WRONG)}
            fields = []
            try:
                codec.validate(name, mutated)
            except ValidationError as exc:
                fields.append(exc.field.split(".")[0])
            compiled_ok = not fields
            assert fields in ([], [field])
            assert compiled_ok == (explain(sv.definition, mutated) is None), (name, mutated)
            try:
                encoded_ok = codec.encode(name, mutated) is not None
            except ValidationError:
                encoded_ok = False
            assert encoded_ok == compiled_ok
            assert fastavro_validate(mutated, sv.parsed, raise_errors=False) == compiled_ok, (
                name, field, mutated[field])
            checked += 1
    assert checked == 1200
