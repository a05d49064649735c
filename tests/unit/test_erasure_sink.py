"""The sink's block list on embedded chdb: a replay of an erased customer's events lands
nothing of them (dropped, counted as erased, not dead-lettered); everyone else and the
customer's events after the erasure land as usual."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cxstream.erasure import BlockList, ErasureLedger, ErasureMark
from cxstream.errors import ServiceError
from cxstream.settings import Settings
from sinks.clickhouse.backend import ClickHouseBackend, make_backend
from sinks.clickhouse.errors import ClickHouseUnavailableError
from sinks.clickhouse.migrations import migrate
from sinks.clickhouse.sink import ClickHouseSink
from sinks.clickhouse.testing import sample_events, shared_chdb_path
from tests.unit.test_clickhouse_contract import messages, scalar, with_database

NAMES = ["transaction", "channel_interaction", "access_event", "feedback_submitted"]
ID_FIELDS = ("customer_id", "principal_id", "target_customer_id")


@pytest.fixture(scope="module")
def chdb_settings() -> Settings:
    base = Settings()
    return base.model_copy(
        update={
            "clickhouse": base.clickhouse.model_copy(
                update={"host": None, "chdb_path": shared_chdb_path()}
            )
        }
    )


@pytest.fixture
def store(chdb_settings: Settings) -> Iterator[tuple[Settings, ClickHouseBackend]]:
    settings = with_database(chdb_settings, f"t_{uuid.uuid4().hex[:12]}")
    backend = make_backend(settings)
    migrate(backend)
    try:
        yield settings, backend
    finally:
        backend.execute(f"DROP DATABASE IF EXISTS {backend.database}")
        backend.close()


def traffic() -> tuple[list[tuple[str, dict[str, Any]]], str, int]:
    """Events of 6 customers, the one to erase and an erasure time after half of them."""
    events = sample_events(400, seed=31, names=NAMES, customers=6)
    target = next(r["customer_id"] for n, r in events if n == "transaction")
    times = sorted(r["occurred_at"] for _, r in events)
    return events, target, times[len(times) // 2]


def names_target(record: dict[str, Any], target: str) -> bool:
    return target in (record.get(f) for f in ID_FIELDS)


def rows_naming(backend: ClickHouseBackend, target: str) -> int:
    total = 0
    for table in NAMES:
        columns = {
            row[0]
            for row in backend.query(
                "SELECT name FROM system.columns WHERE database = %(db)s AND table = %(t)s",
                {"db": backend.database, "t": table},
            )
        }
        for column in set(ID_FIELDS) & columns:
            total += scalar(
                backend, f"SELECT count() FROM {{db}}.{table} WHERE {column} = %(c)s", c=target
            )
    return total


def with_refresh(settings: Settings, seconds: float) -> Settings:
    erasure = settings.erasure.model_copy(update={"blocklist_refresh_seconds": seconds})
    return settings.model_copy(update={"erasure": erasure})


def test_a_replay_of_an_erased_customer_lands_only_what_came_after(
    store: tuple[Settings, ClickHouseBackend],
) -> None:
    settings, backend = store
    events, target, erased_at = traffic()
    ErasureLedger(backend, settings).mark_erased(
        ErasureMark.from_request(
            {"customer_id": target, "occurred_at": erased_at, "request_id": "r1"}, settings
        )
    )
    blocked = [r for _, r in events if names_target(r, target) and r["occurred_at"] <= erased_at]
    after = [r for _, r in events if names_target(r, target) and r["occurred_at"] > erased_at]
    # the traffic has both sides of the erasure
    assert blocked
    assert after

    sink = ClickHouseSink(settings, backend)
    assert sink.process(messages(settings, events)) == []  # nothing dead-lettered

    assert sink.stats.erased == len(blocked)
    assert sink.stats.inserted == len(events) - len(blocked)
    assert rows_naming(backend, target) == sum(
        sum(1 for f in ID_FIELDS if r.get(f) == target) for r in after
    )
    kept = {r["event_id"] for _, r in events} - {r["event_id"] for r in blocked}
    stored = {
        row[0]
        for table in NAMES
        for row in backend.query(f"SELECT event_id FROM {backend.database}.{table}")
    }
    assert stored == kept


def test_a_batch_built_before_the_mark_is_filtered_again_before_its_insert(
    store: tuple[Settings, ClickHouseBackend],
) -> None:
    settings, backend = store
    events, target, erased_at = traffic()
    mark = ErasureMark.from_request(
        {"customer_id": target, "occurred_at": erased_at, "request_id": "r2"}, settings
    )
    loads: list[int] = []

    def loader() -> BlockList:
        # the first load (before the batch is built) misses the mark; the one before the
        # insert has it: the erasure was recorded while the batch was being built
        loads.append(1)
        return BlockList(settings, [mark] if len(loads) > 1 else [])

    sink = ClickHouseSink(with_refresh(settings, 1e-6), backend, blocklist_loader=loader)
    sink.process(messages(settings, events))

    assert len(loads) >= 2
    blocked = [r for _, r in events if names_target(r, target) and r["occurred_at"] <= erased_at]
    assert sink.stats.erased == len(blocked) > 0
    assert sink.stats.inserted == len(events) - len(blocked)
    stored = scalar(backend, "SELECT count() FROM {db}.transaction WHERE customer_id = %(c)s",
                    c=target)  # fmt: skip
    assert stored == sum(
        1 for n, r in events if n == "transaction" and r["customer_id"] == target
        and r["occurred_at"] > erased_at
    )  # fmt: skip


def test_an_unreadable_block_list_holds_the_batch_back(
    store: tuple[Settings, ClickHouseBackend],
) -> None:
    settings, backend = store
    events, _, _ = traffic()

    def loader() -> BlockList:
        raise ServiceError("block list store down")

    sink = ClickHouseSink(settings, backend, blocklist_loader=loader)
    with pytest.raises(ClickHouseUnavailableError, match="block list store down"):
        sink.process(messages(settings, events))
    assert sink.stats.inserted == 0
    assert scalar(backend, "SELECT count() FROM {db}.transaction") == 0
