"""Per-principal state kept in memory between batches: the table stays the durable copy (written
once per batch), revoked partitions and failed batches are read again from it, and rule dispatch
by event kind skips only rules that would not have acted."""

from __future__ import annotations

import dataclasses
import itertools
import random
from typing import Any

import pytest

from cxstream.settings import SecuritySettings, Settings
from processors.security.access import access_reader
from processors.security.rules import PRINCIPAL_RULES, rules_for
from processors.security.rules.base import Env
from processors.security.state import StateStore
from processors.security.testing import MemoryPipeline
from tests.unit.test_security_rules import LAGOS, MIN, SHANGHAI, T0, access, rules

ACTIONS = (
    "login_success",
    "login_failure",
    "logout",
    "password_reset",
    "device_change",
    "transfer",
    "record_view",
    "record_export",
    "api_call",
)


def test_store_writes_changed_entries_once_per_batch_and_keeps_the_table_unshared() -> None:
    table: dict[str, Any] = {"a": {"offset": 1, "w": [1]}}
    store = StateStore(table, faust_tables=False)
    value = store.get("a", 0)
    assert value == {"offset": 1, "w": [1]}
    assert value is not table["a"]
    value["w"].append(2)
    store.stage("a", value, None, 0)
    store.stage("b", {"offset": 5}, None, 1)
    assert table["a"] == {"offset": 1, "w": [1]}  # nothing written before the flush
    assert store.flush() == 2
    assert table == {"a": {"offset": 1, "w": [1, 2]}, "b": {"offset": 5}}
    # the live object is reused by the next batch; the table holds a copy
    assert store.get("a", 0) is value
    value["w"].append(3)
    assert table["a"]["w"] == [1, 2]
    assert store.flush() == 0  # not staged: not written
    assert store.loads == 1


def test_store_forgets_revoked_partitions_and_what_a_failed_batch_touched() -> None:
    table: dict[str, Any] = {"a": {"n": 1}, "b": {"n": 1}}
    store = StateStore(table, faust_tables=False)
    a, b = store.get("a", 0), store.get("b", 1)
    store.flush()
    # another worker advanced partition 1 while it was revoked from us
    store.forget({1})
    table["b"] = {"n": 7}
    assert store.get("b", 1) == {"n": 7}
    assert store.get("a", 0) is a
    store.flush()
    # a batch changes "a" in place, then fails: the change must not survive in memory
    store.get("a", 0)["n"] = 99
    store.abort()
    assert store.get("a", 0) == {"n": 1}
    del b


def test_store_evicts_the_oldest_clean_entries_above_its_bound() -> None:
    table = {f"k{i}": {"i": i} for i in range(100)}
    store = StateStore(table, faust_tables=False, max_entries=50)
    for i in range(100):
        store.get(f"k{i}", 0)
    store.flush()
    assert store.get("k99", 0) == {"i": 99}
    loads = store.loads
    assert store.get("k0", 0) == {"i": 0}  # evicted: read again from the table
    assert store.loads == loads + 1


def test_a_failed_batch_leaves_nothing_half_applied() -> None:
    settings = Settings(security=SecuritySettings(anomaly_enabled=False, brute_force_failures=4))
    pipe = MemoryPipeline(settings, partitions=1)
    failures = pipe.events([access("C1", "login_failure", T0 + i * 10_000) for i in range(4)])
    # the 4th failure completes the pattern, then an event of the same batch breaks the step
    poison = dataclasses.replace(failures[0], record={"event_id": "x"}, offset=4)
    with pytest.raises(KeyError):
        pipe.engine.on_access([*failures, poison])
    assert pipe.tables["principals"] == {}
    # the batch comes again (its offsets were not committed): the flag it lost is raised now
    assert rules(pipe.run(failures)) == ["brute_force"]


@pytest.mark.parametrize("principal_type", ["customer", "staff"])
def test_rules_skipped_for_an_event_kind_would_not_have_acted(principal_type: str) -> None:
    config = SecuritySettings(
        brute_force_failures=2, bulk_min_distinct=2, off_hours_min_events=1, travel_min_km=0
    )
    read = access_reader(Settings(security=config))
    rng = random.Random(11)
    ids = itertools.count()
    principal = "S1" if principal_type == "staff" else "C1"
    for action in ACTIONS:
        skipped = [
            rule for rule in PRINCIPAL_RULES if rule not in rules_for(principal_type, action)
        ]
        for rule in skipped:
            state: dict[str, Any] = {}
            env = Env(config)
            for step in range(30):
                geo = rng.choice((SHANGHAI, LAGOS))
                record = access(
                    principal,
                    action,
                    T0 + step * rng.choice((1, 30)) * MIN + rng.choice((0, 14)) * 3_600_000,
                    event_id=f"x-{next(ids)}",
                    device_id=rng.choice(("d1", "d2", f"d{step}")),
                    target_customer_id=f"C{step}",
                    staff_team="branch",
                    **geo,
                )
                assert rule(state, read(record, 0, step), env) is None
            assert state == {}, (rule.__module__, action)
