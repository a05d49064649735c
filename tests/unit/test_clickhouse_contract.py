"""Conformance suite of the ClickHouse store, run against every backend.

:class:`ClickHouseContract` holds the tests; a subclass supplies ``base_settings``. Here it runs
on embedded chdb (no service: one temporary store per test process); the same tests run on the
ClickHouse 18.16 server in ``tests/integration/test_clickhouse_sink_server.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Message
from pydantic import SecretStr

from cxstream.privacy import pseudonymise
from cxstream.settings import Settings
from schemas import SchemaCatalog, SchemaVersion, load_catalog
from sinks.clickhouse.backend import ClickHouseBackend, make_backend
from sinks.clickhouse.errors import ClickHouseRejectedError, MigrationError
from sinks.clickhouse.migrations import load_migrations, migrate, status
from sinks.clickhouse.retention import drop_expired, partitions
from sinks.clickhouse.rows import Origin, RowBuilder, TableBatch
from sinks.clickhouse.sink import ClickHouseSink, Fence, insert_bisecting, load_fence
from sinks.clickhouse.tables import ONLINE_CHANNELS
from sinks.clickhouse.testing import sample_events, sample_record, shared_chdb_path
from streams.codec import AvroCodec
from streams.dlq import H_ERROR_REASON, H_SOURCE_OFFSET, header_map
from streams.registry import EmbeddedRegistry

CATALOG = load_catalog()
DAY_MS = 86_400_000
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ACTIVITY = (
    "channel_interaction",
    "transaction",
    "chat_session",
    "feedback_submitted",
    "product_holding_changed",
    "recommendation_feedback",
)


def _database() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def with_database(settings: Settings, database: str, **clickhouse: Any) -> Settings:
    return settings.model_copy(
        update={
            "clickhouse": settings.clickhouse.model_copy(
                update={"database": database, **clickhouse}
            ),
            "kafka": settings.kafka.model_copy(update={"topic_prefix": database}),
            "privacy": settings.privacy.model_copy(
                update={"pseudonym_key": SecretStr("contract-key")}
            ),
        }
    )


def build_batches(
    settings: Settings,
    events: Sequence[tuple[str, dict[str, Any]]],
    *,
    topic_prefix: str,
    first_offset: int = 0,
    partition: int = 0,
) -> dict[str, TableBatch]:
    builder = RowBuilder(settings)
    grouped: dict[str, tuple[list[dict[str, Any]], list[Origin]]] = {}
    for i, (name, record) in enumerate(events):
        records, origins = grouped.setdefault(name, ([], []))
        records.append(record)
        origins.append(Origin(f"{topic_prefix}.{name}", partition, first_offset + i, 1))
    batches: dict[str, TableBatch] = {}
    for name, (records, origins) in grouped.items():
        batches[name], unstorable = builder.build(name, records, origins, 1_767_225_700)
        assert unstorable == []
    return batches


def insert_all(backend: ClickHouseBackend, batches: dict[str, TableBatch]) -> None:
    for batch in batches.values():
        assert insert_bisecting(backend, batch) == []


def scalar(backend: ClickHouseBackend, sql: str, **params: Any) -> Any:
    return backend.query(sql.replace("{db}", backend.database), params)[0][0]


def messages(
    settings: Settings, events: Sequence[tuple[str, dict[str, Any]]], *, first_offset: int = 0
) -> list[Message]:
    """Real confluent-kafka messages as the consumer would return them (one partition)."""
    codec = AvroCodec(EmbeddedRegistry())
    return [
        Message(
            topic=settings.topic(name),
            partition=0,
            offset=first_offset + i,
            key=record["event_id"].encode(),
            value=codec.encode(name, record),
            timestamp=(1, record["occurred_at"]),
        )
        for i, (name, record) in enumerate(events)
    ]


def kpi_events(seed: int) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """A two-day scenario for every rollup, and the KPIs computed from it in plain Python."""
    rng = random.Random(seed)
    customers = [f"cust-{i:03d}" for i in range(60)]
    events: list[tuple[str, dict[str, Any]]] = []

    def add(name: str, t_ms: int, **fields: Any) -> dict[str, Any]:
        record = sample_record(CATALOG.latest(name), rng, t_ms=t_ms, customers=customers)
        record.update(fields)
        events.append((name, record))
        return record

    for _ in range(400):
        add("channel_interaction", START_MS + rng.randrange(2 * DAY_MS))
    for _ in range(300):
        add("survey_response", START_MS + rng.randrange(2 * DAY_MS))
    for _ in range(150):
        add("security_flag", START_MS + rng.randrange(2 * DAY_MS))
    for name in ("transaction", "chat_session", "product_holding_changed"):
        for _ in range(40):
            add(name, START_MS + rng.randrange(2 * DAY_MS))
    for _ in range(50):
        add("recommendation", START_MS + rng.randrange(2 * DAY_MS))
        add("recommendation_feedback", START_MS + rng.randrange(2 * DAY_MS))
    # feedback: answered in 2 h, in 30 h, never; acknowledged then answered in 5 h and later again
    answered_in_time = 0
    for i in range(40):
        submitted = START_MS + rng.randrange(DAY_MS)
        feedback_id = f"fb-{seed}-{i}"
        customer = rng.choice(customers)
        add("feedback_submitted", submitted, feedback_id=feedback_id, customer_id=customer)

        def status(
            after_h: float,
            value: str,
            t0: int = submitted,
            fid: str = feedback_id,
            c: str = customer,
        ) -> None:
            at = t0 + int(after_h * 3_600_000)
            add("feedback_status_changed", at, feedback_id=fid, customer_id=c, status=value)

        case = i % 4
        if case == 0:
            status(2, "responded")
        elif case == 1:
            status(30, "responded")
        elif case == 2:
            status(1, "acknowledged")
        else:
            status(1, "acknowledged")
            status(50, "responded")
            status(5, "responded")  # arrives late, still the first response
        answered_in_time += case in (0, 3)

    requests = [
        r
        for n, r in events
        if n == "channel_interaction" and r["action"] in ("information_request", "service_request")
    ]
    surveys: dict[str, list[int]] = defaultdict(list)
    for n, r in events:
        if n == "survey_response":
            surveys[r["dimension"]].append(r["score"])
    active = {
        r["customer_id"] for n, r in events if n in ACTIVITY and r.get("customer_id") is not None
    }
    served = {
        r["customer_id"] for n, r in events if n in ("recommendation", "recommendation_feedback")
    }
    expected = {
        "online_share": sum(r["channel"] in ONLINE_CHANNELS for r in requests) / len(requests),
        "survey": {
            d: (sum(s) / len(s), sum(x >= 80 for x in s) / len(s)) for d, s in surveys.items()
        },
        "feedback_within_24h": answered_in_time / 40,
        "personalised_share": len(active & served) / len(active),
        "flags": Counter((r["rule"], r["severity"]) for n, r in events if n == "security_flag"),
        "interactions_per_day": Counter(
            r["occurred_at"] // DAY_MS for n, r in events if n == "channel_interaction"
        ),
    }
    return events, expected


def measured_kpis(backend: ClickHouseBackend) -> dict[str, Any]:
    """The same KPIs as the boards read them from the rollups."""
    online = ", ".join(f"'{c}'" for c in ONLINE_CHANNELS)
    db = backend.database
    per_day = backend.query(
        f"SELECT toUInt32(bucket), sum(events) FROM {db}.interactions_1d GROUP BY bucket"
    )
    return {
        "online_share": scalar(
            backend,
            f"SELECT sumIf(events, channel IN ({online})) / sum(events) "
            "FROM {db}.interactions_1h WHERE action IN ('information_request', 'service_request')",
        ),
        "survey": {
            d: (avg, sat)
            for d, avg, sat in backend.query(
                "SELECT dimension, sum(score_sum) / sum(responses), "
                f"sum(satisfied) / sum(responses) FROM {db}.surveys_1d GROUP BY dimension"
            )
        },
        "feedback_within_24h": scalar(
            backend,
            "SELECT countIf(r > toDateTime(0, 'UTC') AND toUInt32(r) - toUInt32(s) <= 86400) "
            "/ count() FROM (SELECT feedback_id, minIfMerge(submitted_at) AS s, "
            "minIfMerge(first_response_at) AS r FROM {db}.feedback_lifecycle "
            "GROUP BY feedback_id HAVING s > toDateTime(0, 'UTC'))",
        ),
        "personalised_share": scalar(
            backend,
            "SELECT countIf(a = 1 AND s = 1) / countIf(a = 1) FROM (SELECT customer_id, "
            "maxMerge(active) AS a, maxMerge(served) AS s FROM {db}.customer_days "
            "GROUP BY customer_id)",
        ),
        "flags": Counter(
            {
                (rule, severity): n
                for rule, severity, n in backend.query(
                    f"SELECT rule, severity, sum(flags) FROM {db}.security_flags_1m "
                    "GROUP BY rule, severity"
                )
            }
        ),
        "interactions_per_day": Counter({t * 1000 // DAY_MS: n for t, n in per_day}),
    }


def assert_kpis_equal(measured: dict[str, Any], expected: dict[str, Any]) -> None:
    assert measured["online_share"] == pytest.approx(expected["online_share"])
    assert set(measured["survey"]) == set(expected["survey"])
    for dimension, (avg, satisfied) in expected["survey"].items():
        assert measured["survey"][dimension] == pytest.approx((avg, satisfied)), dimension
    assert measured["feedback_within_24h"] == pytest.approx(expected["feedback_within_24h"])
    assert measured["personalised_share"] == pytest.approx(expected["personalised_share"])
    assert measured["flags"] == expected["flags"]
    assert measured["interactions_per_day"] == expected["interactions_per_day"]


class ClickHouseContract:
    """Tests every backend must pass; subclasses provide the ``base_settings`` fixture."""

    @pytest.fixture(scope="class")
    @classmethod
    def base_settings(cls) -> Settings:
        raise NotImplementedError

    @pytest.fixture
    def fresh(self, base_settings: Settings) -> Iterator[tuple[Settings, ClickHouseBackend]]:
        """A new, empty database (not migrated), dropped afterwards."""
        settings = with_database(base_settings, _database())
        backend = make_backend(settings)
        try:
            yield settings, backend
        finally:
            backend.execute(f"DROP DATABASE IF EXISTS {backend.database}")
            backend.close()

    @pytest.fixture
    def migrated(
        self, fresh: tuple[Settings, ClickHouseBackend]
    ) -> tuple[Settings, ClickHouseBackend]:
        migrate(fresh[1])
        return fresh

    @pytest.fixture(scope="class")
    @classmethod
    def store(cls, base_settings: Settings) -> Iterator[tuple[Settings, ClickHouseBackend]]:
        """One migrated database shared by the tests of the class (each uses its own topics)."""
        settings = with_database(base_settings, _database())
        backend = make_backend(settings)
        migrate(backend)
        try:
            yield settings, backend
        finally:
            backend.execute(f"DROP DATABASE IF EXISTS {backend.database}")
            backend.close()

    # -- migrations ----------------------------------------------------------------------------

    def test_migrations_are_idempotent(self, fresh: tuple[Settings, ClickHouseBackend]) -> None:
        _, backend = fresh
        first = migrate(backend)
        assert first.applied == [m.id for m in load_migrations()]
        tables = backend.query(
            "SELECT name, engine FROM system.tables WHERE database = %(db)s",
            {"db": backend.database},
        )
        second = migrate(backend)
        assert not second.changed
        # a file interrupted half-way is re-run whole: every statement must be repeatable
        for migration in load_migrations():
            for statement in migration.statements(backend.database):
                backend.execute(statement)
        assert sorted(tables) == sorted(
            backend.query(
                "SELECT name, engine FROM system.tables WHERE database = %(db)s",
                {"db": backend.database},
            )
        )
        states = status(backend)
        assert all(s.applied_at is not None and s.checksum_ok for s in states)

    def test_a_changed_applied_migration_is_refused(
        self, migrated: tuple[Settings, ClickHouseBackend]
    ) -> None:
        _, backend = migrated
        migrations = load_migrations()
        edited = [
            dataclasses.replace(m, sql=m.sql + "\n-- edited\n") if m.version == 2 else m
            for m in migrations
        ]
        with pytest.raises(MigrationError, match=r"0002_sink_tables\.sql changed"):
            migrate(backend, migrations=edited)

    def test_fields_of_a_new_schema_version_become_columns(
        self, migrated: tuple[Settings, ClickHouseBackend]
    ) -> None:
        settings, backend = migrated
        old = build_batches(settings, sample_events(5, names=["transaction"]), topic_prefix="v1")
        insert_all(backend, old)
        latest = CATALOG.latest("transaction")
        definition = copy.deepcopy(latest.definition)
        definition["fields"].append({"name": "terminal", "type": "string", "default": "none"})
        definition["fields"].append(
            {"name": "fx_rate", "type": ["null", "double"], "default": None}
        )
        v2 = SchemaVersion("transaction", latest.version + 1, 9_999, definition)
        catalog = SchemaCatalog([*CATALOG, v2])
        report = migrate(backend, catalog=catalog)
        assert report.columns_added == ["transaction.terminal", "transaction.fx_rate"]
        assert not migrate(backend, catalog=catalog).changed
        rows = backend.query(
            f"SELECT DISTINCT terminal, fx_rate FROM {backend.database}.transaction"
        )
        assert rows == [("none", None)]  # the Avro default fills rows written before v2

    # -- inserts -------------------------------------------------------------------------------

    def test_every_table_takes_sample_rows(self, store: tuple[Settings, ClickHouseBackend]) -> None:
        settings, backend = store
        events = sample_events(1200, seed=11)
        batches = build_batches(settings, events, topic_prefix="every")
        insert_all(backend, batches)
        assert set(batches) == set(CATALOG.names())
        for name, batch in batches.items():
            got = scalar(
                backend,
                f"SELECT count() FROM {{db}}.{name} FINAL WHERE kafka_topic = %(t)s",
                t=f"every.{name}",
            )
            assert got == len(batch), name
        landed = scalar(
            backend,
            "SELECT sum(rows) FROM {db}.sink_offsets WHERE topic LIKE 'every.%%'",
        )
        assert landed == len(events)

    def test_an_insert_leaves_the_callers_columns_as_they_were(
        self, store: tuple[Settings, ClickHouseBackend]
    ) -> None:
        settings, backend = store
        events = sample_events(300, seed=12, names=["channel_interaction"])
        batch = build_batches(settings, events, topic_prefix="intact")["channel_interaction"]
        assert any(v is None for v in batch.column("customer_id"))  # nulls the driver rewrites
        before = copy.deepcopy(batch.data)
        backend.insert(batch.table, batch.columns, batch.data)
        assert batch.data == before  # a retry (or a bisected half) sends the original values
        rows = backend.query(
            f"SELECT event_id, customer_id FROM {backend.database}.channel_interaction "
            "WHERE kafka_topic = 'intact.channel_interaction'"
        )
        assert sorted(rows, key=str) == sorted(
            zip(batch.column("event_id"), batch.column("customer_id"), strict=True), key=str
        )

    def test_resent_events_collapse_under_final(
        self, store: tuple[Settings, ClickHouseBackend]
    ) -> None:
        settings, backend = store
        events = sample_events(300, seed=12, names=["access_event"])
        # a producer re-sent everything: same event ids, new offsets
        insert_all(backend, build_batches(settings, events, topic_prefix="resend"))
        insert_all(
            backend, build_batches(settings, events, topic_prefix="resend", first_offset=300)
        )
        where = "WHERE kafka_topic = 'resend.access_event'"
        assert scalar(backend, f"SELECT count() FROM {{db}}.access_event {where}") == 600
        assert scalar(backend, f"SELECT count() FROM {{db}}.access_event FINAL {where}") == 300
        assert (
            scalar(backend, f"SELECT uniqExact(event_id) FROM {{db}}.access_event {where}") == 300
        )
        backend.execute(f"OPTIMIZE TABLE {backend.database}.access_event FINAL")
        assert scalar(backend, f"SELECT count() FROM {{db}}.access_event {where}") == 300

    def test_pii_is_pseudonymised_and_free_text_absent(
        self, store: tuple[Settings, ClickHouseBackend]
    ) -> None:
        settings, backend = store
        rng = random.Random(5)
        feedback = sample_record(CATALOG.latest("feedback_submitted"), rng, t_ms=START_MS)
        feedback.update(text="card blocked abroad", contact_email="Ann@Bank.cn", contact_phone=None)
        person = sample_record(CATALOG.latest("customer_registered"), rng, t_ms=START_MS)
        person.update(full_name="Li Wei", national_id="110101199003074578")
        events = [("feedback_submitted", feedback), ("customer_registered", person)]
        insert_all(backend, build_batches(settings, events, topic_prefix="pii"))
        row = backend.query(
            f"SELECT text, text_length, contact_email, contact_phone FROM "
            f"{backend.database}.feedback_submitted WHERE event_id = %(id)s",
            {"id": feedback["event_id"]},
        )
        assert row == [
            (
                None,
                len("card blocked abroad"),
                pseudonymise("ann@bank.cn", settings, pii_class="email"),
                None,
            )
        ]
        name, national_id = backend.query(
            f"SELECT full_name, national_id FROM {backend.database}.customer_registered "
            "WHERE event_id = %(id)s",
            {"id": person["event_id"]},
        )[0]
        assert name == pseudonymise("Li Wei", settings, pii_class="name")
        assert national_id == pseudonymise("110101199003074578", settings)
        # no clear value of any PII field landed anywhere in either table
        for table, record in (("feedback_submitted", feedback), ("customer_registered", person)):
            clear = [
                v for f in CATALOG.latest(table).pii_fields if (v := record[f.name]) is not None
            ]
            dump = str(backend.query(f"SELECT * FROM {backend.database}.{table}"))
            assert not [v for v in clear if v in dump], table

    def test_rejected_rows_are_isolated_and_the_rest_lands(
        self, migrated: tuple[Settings, ClickHouseBackend]
    ) -> None:
        settings, backend = migrated
        db = backend.database
        # a server-side check like a production constraint: the server refuses those rows
        backend.execute(
            f"ALTER TABLE {db}.transaction ADD COLUMN guard UInt8 "
            "MATERIALIZED throwIf(amount_minor = -424242)"
        )
        events = sample_events(64, seed=13, names=["transaction"])
        for i in (3, 40, 41):
            events[i][1]["amount_minor"] = -424242
        batch = build_batches(settings, events, topic_prefix="reject")["transaction"]
        rejected = insert_bisecting(backend, batch)
        assert sorted(o.offset for o, _ in rejected) == [3, 40, 41]
        assert all(isinstance(e, ClickHouseRejectedError) and e.code == 395 for _, e in rejected)
        assert "throwIf" in str(rejected[0][1])
        kept = {r[1]["event_id"] for i, r in enumerate(events) if i not in (3, 40, 41)}
        stored = {row[0] for row in backend.query(f"SELECT event_id FROM {db}.transaction FINAL")}
        assert stored == kept

    # -- the sink's fence: no duplicates after replays -----------------------------------------

    def test_fence_knows_every_landed_offset(
        self, store: tuple[Settings, ClickHouseBackend]
    ) -> None:
        settings, backend = store
        events = sample_events(100, seed=14, names=["survey_response"])
        batches = build_batches(settings, events, topic_prefix="fence")
        batch = batches["survey_response"]
        # two blocks: 0..49, then 51..99 without 70 (50 and 70 became dead letters)
        second = [o for o in range(51, 100) if o != 70]
        insert_all(backend, {"a": batch.subset(range(50))})
        insert_all(backend, {"b": batch.subset(second)})
        key = ("fence.survey_response", 0)
        # a contiguous block comes back as one range, a block with a gap as its exact offsets
        assert load_fence(backend, {key: 0}) == {key: [(0, 49), *((o, o) for o in second)]}
        assert load_fence(backend, {key: 60})[key] == [(o, o) for o in second]
        fence = Fence()
        fence.add(key, load_fence(backend, {key: 0})[key])
        assert fence.ranges(key) == [(0, 49), (51, 69), (71, 99)]
        assert load_fence(backend, {("fence.survey_response", 1): 0}) == {
            ("fence.survey_response", 1): []
        }

    def test_sink_replay_inserts_nothing_twice(
        self, migrated: tuple[Settings, ClickHouseBackend]
    ) -> None:
        settings, backend = migrated
        events, expected = kpi_events(seed=21)
        batch = messages(settings, events)
        first = ClickHouseSink(settings, backend)
        assert first.process(batch[:1000]) == []
        # crash before the commit; the next owner re-reads from the committed offset (0)
        second = ClickHouseSink(settings, backend)
        assert second.process(batch) == []
        assert second.stats.fenced == 1000
        assert second.stats.inserted == len(events) - 1000
        # and again, whole batch: nothing new at all
        third = ClickHouseSink(settings, backend)
        assert third.process(batch) == []
        assert (third.stats.fenced, third.stats.inserted) == (len(events), 0)
        total = sum(
            scalar(backend, f"SELECT count() FROM {{db}}.{name}")  # no FINAL: no row twice
            for name in {n for n, _ in events}
        )
        assert total == len(events)
        assert_kpis_equal(measured_kpis(backend), expected)

    def test_an_erased_customer_is_not_resurrected_by_a_replay(
        self, migrated: tuple[Settings, ClickHouseBackend]
    ) -> None:
        # BRIEF §4: ALTER DELETE keeps ClickHouse's insert checksums, so a replay after an
        # erasure can silently resurrect (or drop) rows; the offset fence must not
        settings, backend = migrated
        db = backend.database
        events = sample_events(200, seed=18, names=["transaction"], customers=5)
        erased = events[0][1]["customer_id"]
        batch = messages(settings, events)
        ClickHouseSink(settings, backend).process(batch)
        before = scalar(backend, "SELECT count() FROM {db}.transaction")
        backend.execute(
            f"ALTER TABLE {db}.transaction DELETE WHERE customer_id = %(c)s", {"c": erased}
        )
        deadline = time.monotonic() + 30
        while scalar(
            backend,
            "SELECT count() FROM system.mutations WHERE database = %(db)s AND NOT is_done",
            db=db,
        ):
            assert time.monotonic() < deadline, "the erasure mutation did not finish"
            time.sleep(0.1)
        remaining = scalar(backend, "SELECT count() FROM {db}.transaction")
        assert 0 < remaining < before
        replay = ClickHouseSink(settings, backend)
        assert replay.process(batch) == []  # crash before commit: all delivered again
        assert replay.stats.inserted == 0
        assert scalar(backend, "SELECT count() FROM {db}.transaction") == remaining
        assert (
            scalar(
                backend, "SELECT count() FROM {db}.transaction WHERE customer_id = %(c)s", c=erased
            )
            == 0
        )

    def test_undecodable_and_unstorable_messages_become_dead_letters(
        self, migrated: tuple[Settings, ClickHouseBackend]
    ) -> None:
        settings, backend = migrated
        events = sample_events(10, seed=15, names=["transaction"])
        events[4][1]["occurred_at"] = 2**33 * 1000  # year 2242: no DateTime holds it
        batch = messages(settings, events)
        batch.insert(
            7, Message(topic=settings.topic("transaction"), partition=0, offset=99, value=b"\x00")
        )
        letters = ClickHouseSink(settings, backend).process(batch)
        reasons = {
            header_map(letter.headers)[H_SOURCE_OFFSET]: header_map(letter.headers)[H_ERROR_REASON]
            for letter in letters
        }
        assert reasons == {"4": "unstorable", "99": "truncated"}
        values = {header_map(letter.headers)[H_SOURCE_OFFSET]: letter.value for letter in letters}
        assert values == {"4": batch[4].value(), "99": batch[7].value()}  # the original bytes
        assert scalar(backend, "SELECT count() FROM {db}.transaction") == 9

    def test_tombstones_are_skipped_not_dead_lettered(
        self, migrated: tuple[Settings, ClickHouseBackend]
    ) -> None:
        settings, backend = migrated
        events = sample_events(6, seed=16, names=["profile_snapshot"])
        batch = messages(settings, events)
        # what the profiles processor publishes for an erased customer: its key, a null value
        tombstone = Message(
            topic=settings.topic("profile_snapshot"), partition=0, offset=50, key=b"cust-1"
        )
        assert tombstone.value() is None
        batch.insert(2, tombstone)
        sink = ClickHouseSink(settings, backend)
        assert sink.process(batch) == []
        assert (sink.stats.tombstones, sink.stats.inserted) == (1, len(events))
        stored = backend.query(f"SELECT event_id FROM {backend.database}.profile_snapshot")
        assert sorted(r[0] for r in stored) == sorted(r["event_id"] for _, r in events)

    # -- rollups -------------------------------------------------------------------------------

    def test_rollups_equal_kpis_computed_from_the_events(
        self, migrated: tuple[Settings, ClickHouseBackend]
    ) -> None:
        settings, backend = migrated
        events, expected = kpi_events(seed=22)
        insert_all(backend, build_batches(settings, events, topic_prefix="kpi"))
        assert_kpis_equal(measured_kpis(backend), expected)
        # the three grains agree with each other
        sums = {
            grain: scalar(backend, f"SELECT sum(events) FROM {{db}}.interactions_{grain}")
            for grain in ("1m", "1h", "1d")
        }
        assert set(sums.values()) == {sum(n == "channel_interaction" for n, _ in events)}

    # -- retention -----------------------------------------------------------------------------

    def test_retention_drops_whole_expired_partitions(
        self, migrated: tuple[Settings, ClickHouseBackend]
    ) -> None:
        settings, backend = migrated
        today = date(2027, 6, 30)
        midnight = datetime(today.year, today.month, today.day, tzinfo=UTC)

        def at(days_ago: int) -> int:
            return int((midnight - timedelta(days=days_ago)).timestamp() * 1000) + 3_600_000

        old = sample_events(20, seed=16, names=["survey_response", "customer_registered"])
        recent = sample_events(20, seed=17, names=["survey_response"])
        for _, record in old:
            record["occurred_at"] = at(500)
        for _, record in recent:
            record["occurred_at"] = at(10)
        insert_all(backend, build_batches(settings, old + recent, topic_prefix="ret"))
        limits = settings.clickhouse.model_copy(
            update={
                "retention_raw_days": 400,
                "retention_minute_rollup_days": 30,
                "retention_hour_rollup_days": 600,
            }
        )
        settings = settings.model_copy(update={"clickhouse": limits})
        expired = drop_expired(backend, settings, today=today, dry_run=True)
        old_day = (midnight - timedelta(days=500)).strftime("%Y%m%d")
        assert {(p.table, p.partition_id) for p in expired} == {
            ("survey_response", old_day),
            ("surveys_1m", old_day),
            ("sink_offsets", "20260101"),  # the sink's own tables keep the minute retention
        }
        assert drop_expired(backend, settings, today=today) == expired
        assert drop_expired(backend, settings, today=today) == []
        n_old_surveys = sum(n == "survey_response" for n, _ in old)
        assert scalar(backend, "SELECT count() FROM {db}.survey_response") == len(recent)
        # master data and long rollups stay
        assert scalar(backend, "SELECT count() FROM {db}.customer_registered") == len(old) - (
            n_old_surveys
        )
        assert scalar(backend, "SELECT sum(responses) FROM {db}.surveys_1d") == len(recent) + (
            n_old_surveys
        )
        assert scalar(backend, "SELECT sum(responses) FROM {db}.surveys_1m") == len(recent)
        assert {p.table for p in partitions(backend)} >= {"survey_response", "surveys_1d"}


class TestChdbContract(ClickHouseContract):
    @pytest.fixture(scope="class")
    @classmethod
    def base_settings(cls) -> Settings:
        return Settings(
            clickhouse={"host": None, "chdb_path": shared_chdb_path()}  # type: ignore[arg-type]
        )
