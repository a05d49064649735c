"""The ClickHouse sink's pure parts: generated DDL, row building, fence ranges, retention rules."""

from __future__ import annotations

import random
from datetime import date

import pytest
from pydantic import SecretStr

from cxstream.privacy import pseudonymise
from cxstream.settings import ClickHouseSettings, PrivacySettings, Settings
from schemas import load_catalog
from sinks.clickhouse.errors import MigrationError, UnstorableValueError
from sinks.clickhouse.migrations import MIGRATIONS_DIR, load_migrations, split_statements
from sinks.clickhouse.retention import last_day, retention_days
from sinks.clickhouse.rows import Origin, RowBuilder
from sinks.clickhouse.sink import Fence
from sinks.clickhouse.tables import (
    LAYOUTS,
    generate_offsets_migration,
    generate_raw_migration,
    raw_tables,
)
from sinks.clickhouse.testing import sample_record

CATALOG = load_catalog()
START = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def test_checked_in_ddl_is_what_the_schemas_generate() -> None:
    # the raw tables and fence views are generated; a drift means someone edited one side only
    assert (MIGRATIONS_DIR / "0001_raw_tables.sql").read_text() == generate_raw_migration()
    assert (MIGRATIONS_DIR / "0003_offsets_views.sql").read_text() == generate_offsets_migration()


def test_every_event_type_has_a_table_and_every_field_a_column() -> None:
    tables = {t.name: t for t in raw_tables(CATALOG)}
    assert set(tables) == set(CATALOG.names()) == set(LAYOUTS)
    for name, table in tables.items():
        sources = {c.source for c in table.columns if c.kind != "meta"}
        assert sources == CATALOG.latest(name).field_names, name
        assert table.create_sql().endswith("event_id)"), name  # ReplacingMergeTree by event
        assert {"ingest_time", "kafka_topic", "kafka_partition", "kafka_offset"} <= set(
            table.column_names
        )


def test_column_mapping_follows_the_common_dialect() -> None:
    tables = {t.name: {c.name: c.type for c in t.columns} for t in raw_tables(CATALOG)}
    feedback = tables["feedback_submitted"]
    assert feedback["occurred_at"] == "DateTime('UTC')"
    assert feedback["occurred_at_ms"] == "UInt64"
    assert feedback["channel"] == "LowCardinality(String)"  # enum
    assert feedback["text"] == "Nullable(String)"  # free text: NULL unless stored in clear
    assert feedback["text_length"] == "UInt32"
    assert feedback["contact_email"] == "Nullable(String)"
    alert = tables["alert"]
    assert (alert["details_keys"], alert["details_values"]) == ("Array(String)", "Array(String)")
    assert alert["deadline_at"] == "Nullable(DateTime('UTC'))"
    profile = tables["profile_snapshot"]
    assert profile["consents_values"] == "Array(UInt8)"  # map of booleans, no Bool on 18.16
    assert profile["products"] == "Array(String)"
    recommendation = tables["recommendation"]
    assert recommendation["items_rank"] == "Array(Int32)"
    assert recommendation["items_score"] == "Array(Float64)"
    access = tables["access_event"]
    assert access["staff_team"] == "LowCardinality(Nullable(String))"
    every_type = {t for columns in tables.values() for t in columns.values()}
    assert not any(t.startswith(("DateTime64", "Map(", "Bool")) for t in every_type)


def test_statement_splitting() -> None:
    sql = "-- a comment; with a semicolon\nCREATE TABLE a (x UInt8)\nENGINE = Log;\n\nSELECT 1;\n"
    assert split_statements(sql) == ["CREATE TABLE a (x UInt8)\nENGINE = Log", "SELECT 1"]
    with pytest.raises(MigrationError, match="without a final"):
        split_statements("SELECT 1;\nSELECT 2")


def test_migrations_are_numbered_once_and_in_order() -> None:
    migrations = load_migrations()
    versions = [m.version for m in migrations]
    assert versions == list(range(1, len(versions) + 1))
    for migration in migrations:
        statements = migration.statements("db")
        assert statements, migration.id
        for statement in statements:
            assert "IF NOT EXISTS" in statement, (migration.id, statement[:60])
            assert "{db}" not in statement


def _builder(**privacy: object) -> RowBuilder:
    settings = Settings(
        privacy=PrivacySettings(pseudonym_key=SecretStr("unit"), **privacy)  # type: ignore[arg-type]
    )
    return RowBuilder(settings, CATALOG)


def test_rows_pseudonymise_pii_and_drop_free_text() -> None:
    builder = _builder()
    settings = Settings(privacy=PrivacySettings(pseudonym_key=SecretStr("unit")))
    record = sample_record(
        CATALOG.latest("feedback_submitted"), random.Random(4), t_ms=1_767_225_600_123
    )
    record.update(text="my card was charged twice", contact_email="Bob@Example.com")
    values = dict(
        zip(
            builder.tables["feedback_submitted"].column_names,
            builder.row("feedback_submitted", record, Origin("cx.f", 1, 7, 3), 1_767_225_601),
            strict=True,
        )
    )
    assert values["text"] is None
    assert values["text_length"] == len("my card was charged twice")
    assert values["contact_email"] == pseudonymise("bob@example.com", settings, pii_class="email")
    assert values["occurred_at"] == 1_767_225_600
    assert values["occurred_at_ms"] == 1_767_225_600_123
    assert (values["kafka_topic"], values["kafka_partition"], values["kafka_offset"]) == (
        "cx.f",
        1,
        7,
    )
    assert values["schema_id"] == 3

    clear = _builder(store_pii_in_clear=True)
    clear_values = dict(
        zip(
            clear.tables["feedback_submitted"].column_names,
            clear.row("feedback_submitted", record, Origin("cx.f", 1, 7), 0),
            strict=True,
        )
    )
    assert clear_values["text"] == "my card was charged twice"
    assert clear_values["contact_email"] == "Bob@Example.com"


def test_rows_flatten_maps_arrays_and_nested_records() -> None:
    builder = _builder()
    record = sample_record(
        CATALOG.latest("recommendation"), random.Random(2), t_ms=1_767_225_600_000
    )
    record["items"] = [
        {"product_id": "p1", "rank": 1, "score": 0.9, "propensity": 0.5, "reason_code": "x"},
        {"product_id": "p2", "rank": 2, "score": 0.4, "propensity": 0.2, "reason_code": "y"},
    ]
    values = dict(
        zip(
            builder.tables["recommendation"].column_names,
            builder.row("recommendation", record, Origin("t", 0, 0), 0),
            strict=True,
        )
    )
    assert values["items_product_id"] == ["p1", "p2"]
    assert values["items_rank"] == [1, 2]
    profile = sample_record(
        CATALOG.latest("profile_snapshot"), random.Random(3), t_ms=1_767_225_600_000
    )
    profile["consents"] = {"marketing": True, "analytics": False}
    values = dict(
        zip(
            builder.tables["profile_snapshot"].column_names,
            builder.row("profile_snapshot", profile, Origin("t", 0, 0), 0),
            strict=True,
        )
    )
    assert values["consents_keys"] == ["marketing", "analytics"]
    assert values["consents_values"] == [1, 0]


@pytest.mark.parametrize("millis", [-1_000, 2**32 * 1000 + 5])
def test_timestamps_outside_datetime_are_unstorable(millis: int) -> None:
    builder = _builder()
    record = sample_record(CATALOG.latest("transaction"), random.Random(1), t_ms=0)
    record["occurred_at"] = millis
    with pytest.raises(UnstorableValueError, match=r"transaction\.occurred_at"):
        builder.row("transaction", record, Origin("t", 0, 0), 0)


def test_fence_merges_ranges_and_forgets_committed_ones() -> None:
    fence = Fence()
    key = ("cx.t", 0)
    fence.add(key, [(10, 19), (20, 29), (40, 40), (42, 45)])
    assert fence.ranges(key) == [(10, 29), (40, 40), (42, 45)]
    inside = [o for o in range(0, 50) if ("cx.t", 0, o) in fence]
    assert inside == [*range(10, 30), 40, 42, 43, 44, 45]
    assert ("cx.t", 1, 15) not in fence
    fence.forget_below(key, 41)
    assert fence.ranges(key) == [(42, 45)]


def test_partition_ids_and_retention_classes() -> None:
    assert last_day("20260131") == date(2026, 1, 31)
    assert last_day("202402") == date(2024, 2, 29)
    assert last_day("all") is None
    settings = Settings(
        clickhouse=ClickHouseSettings(
            retention_raw_days=100,
            retention_minute_rollup_days=7,
            retention_hour_rollup_days=30,
            retention_day_rollup_days=0,
        )
    )
    assert retention_days("transaction", settings) == 100
    assert retention_days("customer_registered", settings) == 0  # master data is kept
    assert retention_days("interactions_1m", settings) == 7
    assert retention_days("sink_offsets", settings) == 7
    assert retention_days("surveys_1h", settings) == 30
    assert retention_days("customer_days", settings) == 30
    assert retention_days("surveys_1d", settings) == 0
    assert retention_days("schema_migrations", settings) == 0
