"""The simulator's generator: valid, complete, reproducible records in publish order."""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections import Counter

import pytest

from cxstream.errors import ConfigurationError
from cxstream.simulate import (
    ListLabelSink,
    SimEvent,
    SimulationConfig,
    build_population,
    generate,
    parse_duration,
    parse_start,
)
from cxstream.simulate.config import DAY_MS, HOUR_MS, format_duration
from cxstream.simulate.ids import uuid4_from
from streams.codec import AvroCodec
from streams.registry import EmbeddedRegistry

# a Tuesday, midnight in the bank's time zone
START = parse_start("2026-12-01T00:00:00+08:00")
INPUT_EVENTS = {
    "channel_interaction", "chat_session", "customer_registered", "feedback_submitted",
    "feedback_status_changed", "survey_response", "transaction", "product_holding_changed",
    "access_event", "recommendation_feedback", "consent_changed", "erasure_requested",
}  # fmt: skip


@pytest.fixture(scope="module")
def registry() -> EmbeddedRegistry:
    return EmbeddedRegistry()


@pytest.fixture(scope="module")
def day() -> tuple[SimulationConfig, list[SimEvent]]:
    """One simulated weekday of a small bank, with every optional kind of event switched on."""
    config = SimulationConfig(
        start_ms=START,
        customers=400,
        seed=11,
        feedback_per_visit=0.1,
        consent_change_per_visit=0.02,
        erasure_per_customer_per_day=0.01,
    )
    return config, list(generate(config, ListLabelSink()))


def test_every_record_validates_against_its_schema(
    day: tuple[SimulationConfig, list[SimEvent]], registry: EmbeddedRegistry
) -> None:
    codec = AvroCodec(registry)
    _, events = day
    for name, record in events:
        codec.encode(name, record)  # raises ValidationError naming the field
    # every input event type is produced (and nothing that only the platform publishes)
    assert {name for name, _ in events} == INPUT_EVENTS


def test_records_carry_every_field_they_cannot_leave_to_a_default(
    day: tuple[SimulationConfig, list[SimEvent]], registry: EmbeddedRegistry
) -> None:
    _, events = day
    required: dict[str, set[str]] = {}
    for name, record in events:
        if name not in required:
            definition = registry.latest(name).definition
            required[name] = {f["name"] for f in definition["fields"] if "default" not in f}
            # fields of the version the simulator was written against are all filled in
            v1 = registry.catalog.versions(name)[0]
            assert record.keys() >= v1.field_names, name
        assert record.keys() >= required[name], name
        assert record.keys() <= registry.latest(name).field_names, name


def test_timestamps_are_int_millis_inside_the_run(
    day: tuple[SimulationConfig, list[SimEvent]],
) -> None:
    config, events = day
    end = config.start_ms + DAY_MS
    for name, record in events:
        assert type(record["occurred_at"]) is int, name
        assert config.start_ms <= record["occurred_at"] < end, name


def test_event_ids_are_unique_version_4_uuids(
    day: tuple[SimulationConfig, list[SimEvent]],
) -> None:
    _, events = day
    ids = [record["event_id"] for _, record in events]
    assert len(set(ids)) == len(ids)
    for event_id in ids[:2000]:
        parsed = uuid.UUID(event_id)
        assert parsed.version == 4
        assert str(parsed) == event_id


def test_fast_uuid_is_the_uuid_module_version_4() -> None:
    a, b = random.Random(3), random.Random(3)
    for _ in range(5000):
        assert uuid4_from(a) == str(uuid.UUID(int=b.getrandbits(128), version=4))


def test_same_seed_gives_byte_identical_events(registry: EmbeddedRegistry) -> None:
    config = SimulationConfig(start_ms=START, duration_ms=6 * HOUR_MS, customers=120, seed=5)
    codec = AvroCodec(registry)
    first = [codec.encode(n, r) for n, r in generate(config)]
    second = [codec.encode(n, r) for n, r in generate(config)]
    assert len(first) > 1000
    assert first == second


def test_another_seed_gives_other_events() -> None:
    config = SimulationConfig(start_ms=START, duration_ms=6 * HOUR_MS, customers=120, seed=5)
    one = list(generate(config))
    other = list(generate(dataclasses.replace(config, seed=6)))
    assert {r["event_id"] for _, r in one}.isdisjoint(r["event_id"] for _, r in other)
    names_one = [r["full_name"] for n, r in one if n == "customer_registered"]
    names_other = [r["full_name"] for n, r in other if n == "customer_registered"]
    assert names_one != names_other


def test_scenarios_do_not_change_the_ordinary_traffic() -> None:
    config = SimulationConfig(start_ms=START, duration_ms=6 * HOUR_MS, customers=120, seed=5)
    quiet = dataclasses.replace(config, scenarios={})
    labels = ListLabelSink()
    noisy_events = list(generate(config, labels))
    injected = {event_id for label in labels.labels for event_id in label.event_ids}
    assert injected
    ordinary = [r["event_id"] for _, r in noisy_events if r["event_id"] not in injected]
    assert ordinary == [r["event_id"] for _, r in generate(quiet)]


def test_publish_order_is_nondecreasing_except_late_feedback(
    day: tuple[SimulationConfig, list[SimEvent]],
) -> None:
    _, events = day
    clock = 0
    for name, record in events:
        if record["occurred_at"] < clock:
            assert name == "feedback_submitted", (name, record)
        else:
            clock = record["occurred_at"]


def test_run_starts_with_the_core_banking_snapshot(
    day: tuple[SimulationConfig, list[SimEvent]],
) -> None:
    config, events = day
    registered = [r for n, r in events if n == "customer_registered"]
    assert len(registered) == config.customers
    head = events[: len(registered) * 2]
    assert head[0].name == "customer_registered"
    population = build_population(config)
    # the snapshot is the population: stable attributes straight from it
    first = population.customers[0]
    assert registered[0]["customer_id"] == first.customer_id
    assert registered[0]["full_name"] == first.full_name
    opened = {
        r["product_id"]
        for n, r in events
        if n == "product_holding_changed"
        and r["customer_id"] == first.customer_id
        and r["occurred_at"] == config.start_ms
    }
    assert "account.current" in opened


def test_fake_personal_data_looks_real_but_is_reserved(
    day: tuple[SimulationConfig, list[SimEvent]],
) -> None:
    _, events = day
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    registered = [r for n, r in events if n == "customer_registered"]
    mainland_ids = [r["national_id"] for r in registered if (r["national_id"] or "")[:1].isdigit()]
    assert len(mainland_ids) > len(registered) // 2
    for national_id in mainland_ids:
        assert len(national_id) == 18
        total = sum(int(d) * w for d, w in zip(national_id[:17], weights, strict=True))
        valid = "10X98765432"[total % 11]
        assert national_id[-1] != valid  # never a real person's number
    for r in registered:
        if r["email"] is not None:
            assert r["email"].rsplit("@", 1)[1] in {"example.com", "example.net", "example.org"}
        if r["phone"] is not None:
            assert r["phone"].startswith(("+861", "+852", "+447700900", "+1202555"))
    chinese = [r["full_name"] for r in registered if "\u4e00" <= r["full_name"][0] <= "\u9fff"]
    assert len(chinese) > len(registered) // 2
    assert any(" " in r["full_name"] for r in registered)  # and Western names


def test_max_events_stops_exactly() -> None:
    config = SimulationConfig(start_ms=START, duration_ms=None, max_events=2500, customers=100)
    events = list(generate(config))
    assert len(events) == 2500
    assert Counter(n for n, _ in events)["customer_registered"] == 100


def test_duration_and_start_parsing() -> None:
    assert parse_duration("1d") == DAY_MS
    assert parse_duration("1d12h") == DAY_MS + 12 * HOUR_MS
    assert parse_duration("90m") == 90 * 60_000
    odd = DAY_MS + 3 * HOUR_MS + 1500
    assert parse_duration(format_duration(odd)) == odd
    assert parse_start("2026-12-01T00:00:00Z") == parse_start("2026-12-01T08:00:00+08:00")
    assert parse_start("1796083200000") == 1796083200000
    for bad in ("", "1x", "d1", "-2h", "0h"):
        with pytest.raises(ConfigurationError, match="duration"):
            parse_duration(bad)
    with pytest.raises(ConfigurationError, match="start"):
        parse_start("yesterday")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"duration_ms": None}, "set a duration"),
        ({"customers": 0}, "customers"),
        ({"channel_shares": {"fax": 1.0}}, "channel_shares"),
        ({"unanswered_share": 1.5}, "unanswered_share"),
        ({"late_feedback_delay_ms": (HOUR_MS, 30 * HOUR_MS)}, "late_feedback_delay_ms"),
        ({"scenarios": {"phishing": 1}}, "scenarios"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
    ],
)
def test_bad_configs_are_rejected_naming_the_setting(change: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SimulationConfig(start_ms=START, **change)
