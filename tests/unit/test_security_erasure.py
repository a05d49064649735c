"""Erasure in the security processor (without a broker): an erased customer leaves no trace in
the detectors' tables (their own state, staff windows, failed logins per ip/device), their
replayed events stay out, and nobody else is touched."""

from __future__ import annotations

import json
from typing import Any

from cxstream.erasure import customer_pseudonym
from cxstream.settings import KafkaSettings, SecuritySettings, Settings
from processors.security.erasure import ErasedPrincipals, latest_requests, marker_key
from processors.security.state import StateStore
from processors.security.testing import MemoryPipeline
from tests.unit.test_security_rules import MIN, T0, access

ERASED = "C-erased-7"
KEPT = "C-kept-3"
HOUR = 3_600_000


def _pipeline() -> MemoryPipeline:
    settings = Settings(security=SecuritySettings(anomaly_enabled=False, off_hours_min_events=99))
    return MemoryPipeline(settings, partitions=2)


def _traffic(pipe: MemoryPipeline) -> list[dict[str, Any]]:
    # staff on both partitions, so that erasing needs the request on every partition
    staff = [f"S{i}" for i in range(8)]
    assert {pipe.partition(s) for s in staff} == {0, 1}
    records = [
        access(ERASED, "login_failure", T0 + i * MIN, ip="203.0.113.9", device_id="d-shared")
        for i in range(3)
    ]
    records += [
        access(KEPT, "login_failure", T0 + 5 * MIN, ip="203.0.113.9", device_id="d-shared"),
        access(KEPT, "login_success", T0 + 6 * MIN),
    ]
    for i, s in enumerate(staff):
        for target in (ERASED, KEPT):
            records.append(
                access(s, "record_view", T0 + (10 + i) * MIN, target_customer_id=target,
                       staff_team="marketing")
            )  # fmt: skip
    return records


def _request(at: int, request_id: str = "req-1") -> dict[str, Any]:
    return {
        "event_id": f"ev-{request_id}-{at}", "occurred_at": at, "customer_id": ERASED,
        "request_id": request_id, "channel": "app", "reason": "closing", "source": "app",
    }  # fmt: skip


def _text(table: dict[str, Any]) -> str:
    return json.dumps(table, sort_keys=True)


def test_erasure_leaves_nothing_of_the_customer_and_keeps_the_others() -> None:
    pipe = _pipeline()
    records = _traffic(pipe)
    pipe.run(pipe.events(records))
    secrets = {ERASED, customer_pseudonym(ERASED, pipe.settings)}
    principals, networks = pipe.tables["principals"], pipe.tables["networks"]
    # found before (so "absent" afterwards means erased)
    assert ERASED in principals
    assert ERASED in _text(networks)
    assert sum(ERASED in _text(v) for k, v in principals.items() if k.startswith("S")) == 8
    before_kept = {k: v for k, v in principals.items() if k == KEPT}

    changed = pipe.erase([_request(T0 + HOUR)])

    assert changed == 1 + 8 + 2  # own state, 8 staff states, ip and device windows
    assert ERASED not in principals
    for name in ("principals", "networks", "models"):
        text = _text(pipe.tables[name])
        assert not any(s in text for s in secrets), name
    # the others keep everything
    assert {k: v for k, v in principals.items() if k == KEPT} == before_kept
    assert all(KEPT in _text(v) for k, v in principals.items() if k.startswith("S"))
    assert all(KEPT in _text(v) for v in networks.values())
    # one marker per partition, nothing but the erasure time and when it was applied
    pseudonym = customer_pseudonym(ERASED, pipe.settings)
    assert set(pipe.tables["erased"]) == {marker_key(p, pseudonym) for p in (0, 1)}
    for value in pipe.tables["erased"].values():
        assert set(value) == {"erased_at_ms", "erased_applied_ms"}
        assert value["erased_at_ms"] == T0 + HOUR


def test_replays_stay_out_a_restart_included_and_later_events_count_again() -> None:
    pipe = _pipeline()
    records = _traffic(pipe)
    pipe.run(pipe.events(records))
    pipe.erase([_request(T0 + HOUR)])
    snapshot = {name: _text(table) for name, table in pipe.tables.items()}
    # the erasure request again changes nothing
    assert pipe.erase([_request(T0 + HOUR)]) == 0
    assert {name: _text(table) for name, table in pipe.tables.items()} == snapshot
    # a restarted worker reads the markers back and drops the replay (new offsets)
    pipe.engine = pipe.new_engine(pipe.settings)
    naming = [r for r in records if ERASED in (r["principal_id"], r["target_customer_id"])]
    flags = pipe.run(pipe.events(naming))
    assert flags == []
    assert pipe.engine.erased.dropped_events == len(naming)
    assert all(ERASED not in _text(pipe.tables[n]) for n in ("principals", "networks"))
    # an event after the erasure is a new relationship: it counts
    pipe.run(pipe.events([access(ERASED, "login_success", T0 + 2 * HOUR)]))
    assert pipe.tables["principals"][ERASED]["offset"] >= 0


def test_a_later_request_moves_the_marker_an_older_one_does_not() -> None:
    pipe = _pipeline()
    pipe.run(pipe.events(_traffic(pipe)))
    pipe.erase([_request(T0 + HOUR)])
    pipe.erase([_request(T0 - HOUR, "req-0")])
    assert {v["erased_at_ms"] for v in pipe.tables["erased"].values()} == {T0 + HOUR}
    pipe.erase([_request(T0 + 2 * HOUR, "req-2")])
    assert {v["erased_at_ms"] for v in pipe.tables["erased"].values()} == {T0 + 2 * HOUR}
    # events between the two erasures are covered by the later one
    pipe.run(pipe.events([access(ERASED, "login_failure", T0 + HOUR + MIN)]))
    assert ERASED not in pipe.tables["principals"]


def test_store_delete_is_staged_until_flush_and_undone_by_abort() -> None:
    table: dict[str, Any] = {"a": {"n": 1}, "b": {"n": 2}}
    store = StateStore(table, faust_tables=False)
    store.get("a", 0)
    store.delete("a", None, 0)
    assert store.get("a", 0) is None  # pending: no longer visible
    assert "a" in table
    store.abort()
    assert store.get("a", 0) == {"n": 1}
    store.delete("a", None, 0)
    store.delete("missing", None, 0)
    assert store.flush() == 2
    assert table == {"b": {"n": 2}}
    # staged again after a delete: written, not deleted
    store.delete("b", None, 1)
    store.stage("b", {"n": 3}, None, 1)
    store.flush()
    assert table == {"b": {"n": 3}}


def test_markers_expire_after_the_input_retention_on_their_partition_only() -> None:
    settings = Settings(kafka=KafkaSettings(input_retention_ms=HOUR))
    table: dict[str, Any] = {}
    erased = ErasedPrincipals(settings, StateStore(table, faust_tables=False), keep_ms=HOUR)
    pipe = _pipeline()
    [source] = pipe.events([access(ERASED, "login_success", T0)])
    mark = latest_requests([_request(T0)], settings)[ERASED]
    for partition in (0, 1):
        assert erased.add(partition, mark, source.message, now_ms=T0)
    erased.store.flush()
    assert erased.blocks(ERASED, T0)
    assert erased.expire(0, None, now_ms=T0 + HOUR) == 0  # not older than keep_ms yet
    erased.store.flush()
    erased._next_expiry.clear()  # the pass period is wall clock; the test moves time itself
    assert erased.expire(0, None, now_ms=T0 + HOUR + 1) == 1
    erased.store.flush()
    assert set(table) == {marker_key(1, mark.pseudonym)}
    assert erased.blocks(ERASED, T0)  # partition 1 still holds it
