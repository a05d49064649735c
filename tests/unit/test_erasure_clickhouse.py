"""Erasure from ClickHouse, as a contract every backend passes.

Runs here on embedded chdb (no service); ``tests/integration/test_erasure_clickhouse_server.py``
runs the same class against the ClickHouse 18.16 server.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cxstream.erasure import (
    LEDGER_TABLES,
    AuditRecord,
    BlockList,
    ErasureLedger,
    erase_customer_from_clickhouse,
    erase_from_clickhouse,
    erasure_targets,
)
from cxstream.privacy import pseudonymise
from cxstream.settings import Settings
from schemas import load_catalog
from sinks.clickhouse.backend import ClickHouseBackend, make_backend
from sinks.clickhouse.migrations import migrate
from sinks.clickhouse.testing import sample_events, sample_record, shared_chdb_path
from tests.support.pii import PiiSources, scan_for_planted_pii
from tests.unit.test_clickhouse_contract import build_batches, insert_all, with_database

CATALOG = load_catalog()
TARGET = "cust-00003"
START_MS = 1_767_225_600_000
ERASED_AT_MS = START_MS + 2 * 86_400_000  # after every sample event


def table_counts(backend: ClickHouseBackend) -> dict[str, int]:
    names = [t.table for t in erasure_targets(backend)] + ["interactions_1d"]
    return {
        name: int(backend.query(f"SELECT count() FROM {backend.database}.{name}")[0][0])
        for name in names
    }


def events_naming_target(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """Sample traffic of 12 customers plus the rows that name TARGET in the less usual ways."""
    events = sample_events(900, seed=61, start_ms=START_MS, customers=12)
    rng = random.Random(61)
    alert = sample_record(CATALOG.latest("alert"), rng, t_ms=START_MS + 5)
    alert["customer_pseudonym"] = pseudonymise(TARGET, settings)
    staff = sample_record(CATALOG.latest("access_event"), rng, t_ms=START_MS + 6)
    staff.update(principal_id="staff-0042", principal_type="staff", target_customer_id=TARGET)
    anonymous = sample_record(CATALOG.latest("channel_interaction"), rng, t_ms=START_MS + 7)
    anonymous.update(customer_id=None, anonymous_id="anon-1")
    feedback = sample_record(CATALOG.latest("feedback_submitted"), rng, t_ms=START_MS + 8)
    feedback["customer_id"] = TARGET
    request = sample_record(CATALOG.latest("erasure_requested"), rng, t_ms=ERASED_AT_MS)
    request.update(customer_id=TARGET, request_id="req-erase-1")
    extra = [
        ("alert", alert),
        ("access_event", staff),
        ("channel_interaction", anonymous),
        ("feedback_submitted", feedback),
        ("erasure_requested", request),
    ]
    return events + extra


class ErasureContract:
    @pytest.fixture(scope="class")
    @classmethod
    def base_settings(cls) -> Settings:
        raise NotImplementedError

    @pytest.fixture
    def loaded(
        self, base_settings: Settings
    ) -> Iterator[tuple[Settings, ClickHouseBackend, list[tuple[str, dict[str, Any]]]]]:
        settings = with_database(base_settings, f"t_{uuid.uuid4().hex[:12]}")
        backend = make_backend(settings)
        try:
            migrate(backend)
            events = events_naming_target(settings)
            insert_all(backend, build_batches(settings, events, topic_prefix="er"))
            yield settings, backend, events
        finally:
            backend.execute(f"DROP DATABASE IF EXISTS {backend.database}")
            backend.close()

    def test_nothing_of_the_customer_is_left_and_nobody_else_is_touched(
        self, loaded: tuple[Settings, ClickHouseBackend, Any]
    ) -> None:
        settings, backend, _ = loaded
        tables = {t.table for t in erasure_targets(backend)}
        raw_with_ids = {"channel_interaction", "access_event", "security_flag", "alert",
                        "customer_registered", "erasure_requested", "profile_snapshot"}  # fmt: skip
        assert raw_with_ids <= tables
        assert {"customer_days", "feedback_lifecycle"} <= tables
        assert not tables & LEDGER_TABLES
        assert "interactions_1d" not in tables  # count rollups name no one
        pseudonym = pseudonymise(TARGET, settings)
        sources = PiiSources(clickhouse=backend, clickhouse_skip=LEDGER_TABLES)
        before_hits = {f.source.split(".")[1] for f in scan_for_planted_pii([TARGET], sources)}
        assert {"channel_interaction", "access_event", "customer_days",
                "feedback_lifecycle", "erasure_requested"} <= before_hits  # fmt: skip
        assert scan_for_planted_pii([pseudonym], sources)  # the alert's pseudonym
        nulls_sql = (
            f"SELECT count() FROM {backend.database}.channel_interaction WHERE customer_id IS NULL"
        )
        nulls = backend.query(nulls_sql)[0][0]
        assert nulls > 0
        rollup_sql = f"SELECT sum(events) FROM {backend.database}.interactions_1d"
        rollup_events = backend.query(rollup_sql)[0][0]
        before = table_counts(backend)

        result = erase_from_clickhouse(backend, settings, TARGET)

        assert scan_for_planted_pii([TARGET, pseudonym], sources) == []
        after = table_counts(backend)
        for table, count in before.items():
            assert after[table] == count - result.rows.get(table, 0), table
        assert result.total > 0
        assert set(result.rows) >= before_hits
        # rows with a NULL id survive (on 18.16 a NULL delete condition would remove them)
        assert backend.query(nulls_sql)[0][0] == nulls
        assert backend.query(rollup_sql)[0][0] == rollup_events  # aggregates stay as counted
        # again: nothing more to delete, no error
        assert erase_from_clickhouse(backend, settings, TARGET).total == 0

    def test_erasure_request_marks_audits_and_blocks_replays(
        self, loaded: tuple[Settings, ClickHouseBackend, list[tuple[str, dict[str, Any]]]]
    ) -> None:
        settings, backend, events = loaded
        (request,) = [r for _, r in events if r.get("request_id") == "req-erase-1"]
        ledger = ErasureLedger(backend, settings)
        first = erase_customer_from_clickhouse(backend, settings, request)
        replay = erase_customer_from_clickhouse(backend, settings, request)  # request replayed
        assert first.total > 0
        assert replay.total == 0
        trail = ledger.audit_trail(TARGET)
        assert [(a.request_id, a.step, a.status) for a in trail] == [
            ("req-erase-1", "clickhouse", "done")
        ]  # one row per request and step, whatever the replays
        assert trail[0].requested_at_ms == ERASED_AT_MS
        assert trail[0].pseudonym == pseudonymise(TARGET, settings)
        # the ledger never holds the id in clear
        ledger_only = PiiSources(clickhouse=backend)
        assert scan_for_planted_pii([TARGET], ledger_only) == []

        # a replay of Kafka re-inserts the customer's old events: ClickHouse itself keeps them
        # (no insert deduplication on these tables), so the sink must consult the block list
        blocked = ledger.block_list()
        assert isinstance(blocked, BlockList)
        assert len(blocked) == 1
        customer_events = [
            (name, record)
            for name, record in events
            if TARGET in (record.get("customer_id"), record.get("target_customer_id"))
        ]
        assert customer_events
        assert all(blocked.drops(record) for _, record in customer_events)
        kept = [(name, r) for name, r in events if not blocked.drops(r)]
        later = sample_record(
            CATALOG.latest("transaction"), random.Random(3), t_ms=ERASED_AT_MS + 1
        )
        later["customer_id"] = TARGET  # the customer came back after the erasure
        insert_all(backend, build_batches(settings, [*kept, ("transaction", later)],
                                          topic_prefix="er", first_offset=10_000))  # fmt: skip
        found = scan_for_planted_pii([TARGET], PiiSources(clickhouse=backend))
        assert {f.source.split(".")[1] for f in found} <= {"transaction", "customer_days"}
        rows = backend.query(
            f"SELECT event_id FROM {backend.database}.transaction WHERE customer_id = %(c)s",
            {"c": TARGET},
        )
        assert rows == [(later["event_id"],)]

        # the other steps of the request add their own rows, each once
        for step, removed in (("redis", 2), ("redis", 2), ("faust_tables", 7)):
            ledger.record(AuditRecord(trail[0].pseudonym, "req-erase-1", step, ERASED_AT_MS,
                                      rows_removed=removed))  # fmt: skip
        steps = [(a.step, a.rows_removed) for a in ledger.audit_trail(TARGET)]
        assert steps == [("clickhouse", first.total), ("faust_tables", 7), ("redis", 2)]


class TestChdbErasure(ErasureContract):
    @pytest.fixture(scope="class")
    @classmethod
    def base_settings(cls) -> Settings:
        base = Settings()
        return base.model_copy(
            update={
                "clickhouse": base.clickhouse.model_copy(
                    update={"host": None, "chdb_path": shared_chdb_path()}
                )
            }
        )
