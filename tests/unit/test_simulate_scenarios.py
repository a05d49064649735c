"""Injected security scenarios: the patterns are in the events, the ground truth beside them."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cxstream.simulate import (
    SCENARIO_TYPES,
    JsonlLabelSink,
    ListLabelSink,
    ScenarioLabel,
    SimEvent,
    SimulationConfig,
    generate,
    parse_start,
)
from cxstream.simulate.config import DAY_MS, HOUR_MS, MINUTE_MS
from cxstream.simulate.labels import read_labels

START = parse_start("2026-12-01T00:00:00+08:00")
COUNTS = {
    "brute_force": 3, "credential_stuffing": 2, "impossible_travel": 3, "staff_bulk_access": 2,
}  # fmt: skip


@pytest.fixture(scope="module")
def run() -> tuple[SimulationConfig, list[SimEvent], list[ScenarioLabel]]:
    config = SimulationConfig(start_ms=START, customers=500, seed=31, scenarios=COUNTS)
    labels = ListLabelSink()
    events = list(generate(config, labels))
    return config, events, labels.labels


def _by_id(events: list[SimEvent]) -> dict[str, tuple[str, dict[str, Any]]]:
    return {r["event_id"]: (n, r) for n, r in events}


def _km(a: dict[str, Any], b: dict[str, Any]) -> float:
    points = (a["geo_lat"], a["geo_lon"], b["geo_lat"], b["geo_lon"])
    lat1, lon1, lat2, lon2 = map(math.radians, points)
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def test_every_injected_scenario_is_labelled(
    run: tuple[SimulationConfig, list[SimEvent], list[ScenarioLabel]],
) -> None:
    _, _, labels = run
    assert Counter(label.scenario for label in labels) == COUNTS
    assert all(label.complete for label in labels)
    assert len({label.label_id for label in labels}) == len(labels)


def test_every_labelled_event_is_in_the_stream(
    run: tuple[SimulationConfig, list[SimEvent], list[ScenarioLabel]],
) -> None:
    _, events, labels = run
    by_id = _by_id(events)
    for label in labels:
        assert label.event_ids
        times = []
        for event_id in label.event_ids:
            name, record = by_id[event_id]
            assert name == "access_event"
            assert record["principal_id"] in label.principal_ids
            times.append(record["occurred_at"])
        assert (label.start_ms, label.end_ms) == (min(times), max(times))


def test_labels_never_leak_into_events(
    run: tuple[SimulationConfig, list[SimEvent], list[ScenarioLabel]],
) -> None:
    _, events, labels = run
    secrets = {label.label_id for label in labels} | set(SCENARIO_TYPES)
    for _, record in events:
        for value in record.values():
            assert not (isinstance(value, str) and value in secrets)


def test_brute_force_is_many_failures_on_one_account_from_one_address(
    run: tuple[SimulationConfig, list[SimEvent], list[ScenarioLabel]],
) -> None:
    _, events, labels = run
    by_id = _by_id(events)
    for label in (x for x in labels if x.scenario == "brute_force"):
        records = [by_id[e][1] for e in label.event_ids]
        failures = [r for r in records if r["action"] == "login_failure"]
        assert len(failures) >= 20
        assert {r["principal_id"] for r in records} == {label.principal_id}
        assert {r["ip"] for r in records} == {label.ip}
        span = max(r["occurred_at"] for r in failures) - min(r["occurred_at"] for r in failures)
        assert span <= 10 * MINUTE_MS


def test_credential_stuffing_is_one_address_failing_across_many_accounts(
    run: tuple[SimulationConfig, list[SimEvent], list[ScenarioLabel]],
) -> None:
    _, events, labels = run
    by_id = _by_id(events)
    for label in (x for x in labels if x.scenario == "credential_stuffing"):
        records = [by_id[e][1] for e in label.event_ids]
        assert {(r["ip"], r["device_id"]) for r in records} == {(label.ip, label.device_id)}
        failed_accounts = {r["principal_id"] for r in records if r["action"] == "login_failure"}
        assert len(failed_accounts) >= 40
        assert failed_accounts == set(label.principal_ids)
        assert label.end_ms - label.start_ms <= 31 * MINUTE_MS


def test_impossible_travel_is_two_logins_too_far_apart_for_the_time(
    run: tuple[SimulationConfig, list[SimEvent], list[ScenarioLabel]],
) -> None:
    _, events, labels = run
    by_id = _by_id(events)
    for label in (x for x in labels if x.scenario == "impossible_travel"):
        logins = [by_id[e][1] for e in label.event_ids if by_id[e][1]["action"] == "login_success"]
        assert len(logins) == 2
        first, second = sorted(logins, key=lambda r: r["occurred_at"])
        hours = (second["occurred_at"] - first["occurred_at"]) / HOUR_MS
        assert _km(first, second) / hours > 1000  # faster than any airliner


def test_legitimate_trips_never_look_like_impossible_travel() -> None:
    config = SimulationConfig(
        start_ms=START, duration_ms=3 * DAY_MS, customers=300, seed=5, scenarios={},
        trips_per_customer_per_day=0.2,
    )  # fmt: skip
    last: dict[str, dict[str, Any]] = {}
    travellers = set()
    for name, r in generate(config):
        if name != "access_event" or r["principal_type"] != "customer" or r["geo_lat"] is None:
            continue
        previous = last.get(r["principal_id"])
        if previous is not None and previous["geo_city"] != r["geo_city"]:
            travellers.add(r["principal_id"])
            hours = max(r["occurred_at"] - previous["occurred_at"], 1) / HOUR_MS
            assert _km(previous, r) / hours < 1000, (previous, r)
        last[r["principal_id"]] = r
    assert len(travellers) > 20


def test_staff_bulk_access_touches_far_more_customers_than_the_baseline(
    run: tuple[SimulationConfig, list[SimEvent], list[ScenarioLabel]],
) -> None:
    config, events, labels = run
    by_id = _by_id(events)
    injected = {e for label in labels for e in label.event_ids}
    for label in (x for x in labels if x.scenario == "staff_bulk_access"):
        records = [by_id[e][1] for e in label.event_ids]
        assert {r["principal_id"] for r in records} == {label.principal_id}
        assert len({r["target_customer_id"] for r in records}) == config.staff_bulk_records
        assert label.end_ms - label.start_ms <= HOUR_MS
        ordinary = {
            r["target_customer_id"]
            for n, r in events
            if n == "access_event"
            and r["principal_id"] == label.principal_id
            and r["event_id"] not in injected
        }
        # the same person's ordinary look-ups over the whole day are a small fraction of it
        assert len(ordinary) < config.staff_bulk_records / 2


def test_runs_cut_short_label_what_went_out(
    run: tuple[SimulationConfig, list[SimEvent], list[ScenarioLabel]],
) -> None:
    config, events, labels = run
    bulk = next(x for x in labels if x.scenario == "staff_bulk_access")
    # stop in the middle of that bulk access
    cut = next(i for i, (_, r) in enumerate(events) if r["event_id"] == bulk.event_ids[150])
    short = dataclasses.replace(config, max_events=cut + 1)
    sink = ListLabelSink()
    emitted = {r["event_id"] for _, r in generate(short, sink)}
    assert len(emitted) == cut + 1
    partial = [x for x in sink.labels if not x.complete]
    assert [x.label_id for x in partial] == [bulk.label_id]
    assert partial[0].event_ids == bulk.event_ids[:151]
    assert all(set(x.event_ids) <= emitted for x in sink.labels)


def test_jsonl_labels_round_trip(
    run: tuple[SimulationConfig, list[SimEvent], list[ScenarioLabel]], tmp_path: Path
) -> None:
    _, _, labels = run
    path = tmp_path / "out" / "labels.jsonl"
    with JsonlLabelSink(path) as sink:
        for label in labels:
            sink.write(label)
    rows = read_labels(path)
    assert [row["label_id"] for row in rows] == [label.label_id for label in labels]
    assert rows[0]["event_ids"] == labels[0].event_ids
    assert rows[0]["start"].endswith("Z")
    json.dumps(rows)  # plain JSON all the way down
