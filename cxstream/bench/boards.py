"""``cxstream bench boards``: every board panel's SQL on ~10 million raw events (issue 3).

Figure: "every board query <= 500 ms on 10 million raw events (chdb and server)".

Load method (the same for both backends, in a fresh database ``bench_boards_<run>``):

1. **Base**: ``base_days`` (3) days of simulated bank traffic ending now
   (:func:`dashboards.testing.simulate`: :func:`cxstream.simulate.generate` plus the outputs
   derived from its ground truth: security flags, recommendations, SLA alerts), with the
   customer count sized so that ``days / base_days`` copies make about ``events`` rows. Records
   become raw-table columns with the sink's own :class:`~sinks.clickhouse.rows.RowBuilder`
   (pseudonyms, free text dropped, ...; the Avro encode/decode round trip is skipped: the
   codec returns the same dicts), ``ingest_time`` = ``occurred_at`` + 2 s, Kafka coordinates
   over 4 partitions; then one columnar ``backend.insert`` per table into staging copies
   ``_base_<table>`` (``CREATE TABLE ... AS``: same engine, no views).
2. **Replication in SQL**: for copy ``k`` = 0 .. ``days / base_days - 1``,
   ``INSERT INTO <table> SELECT ... FROM _base_<table>`` with every ``DateTime`` column and
   ``occurred_at_ms`` shifted back by ``k * base_days`` days, ``kafka_offset`` moved by
   ``k * 10^8``, ``event_id`` given a per-copy last 4 hex digits and the per-event ids
   (feedback, alert, flag, recommendation, session, survey, transaction, request ids) a
   ``~k`` suffix, so items never merge across copies. Customers, staff and products are the
   same population in every copy (a bank sees the same customers come back);
   ``customer_registered`` lands once. These are ordinary INSERTs into the raw tables, so
   every materialized view fires as in production (rollups at 1m/1h/1d, feedback lifecycle,
   customer days, the ``sink_offsets`` fence); blocks are ClickHouse's INSERT SELECT blocks
   (up to ~1M rows), larger than the sink's batches, so there are fewer parts than a
   long-running sink leaves before merges.
3. **Pipeline telemetry**: ``sink_batches`` gets one row per 10 s and topic computed from the
   raw rows (rows, latency, delay), ``dead_letter`` one row per ~20k events spread over the
   range (reasons of :mod:`streams.dlq`). The staging tables are dropped afterwards.

Queries: every target of every board (:func:`dashboards.runner.panel_queries`, macros and
variables expanded as Grafana would, variables at their saved selection, All) for the ranges
``last 24 h``, ``last 7 days`` and ``last 30 days`` ending now, each run ``repeats`` (5) times
with :func:`dashboards.runner.run_sql` (its elapsed time includes the ``USE`` round trips, a
fraction of a millisecond locally). A query slower than ``slow_cutoff_ms`` on its first run is
not repeated. Per backend: load time and rate, rows per table, per board and range the median
of its panels' medians, the max of all runs and the number of panels over 500 ms (by median),
the slowest panels, and every panel's median/max per range.

The server is ``clickhouse.host`` or, when unset, the local stack's (127.0.0.1:
``stack.clickhouse_port``); chdb runs on a temporary directory removed at the end. Options:
``events`` (10_000_000), ``backend`` (``both``, ``server``, ``chdb``), ``days`` (30),
``base_days`` (3), ``repeats`` (5), ``slow_cutoff_ms`` (5000), ``threshold_ms`` (500),
``keep`` (false: drop the database at the end), ``seed`` (7).
"""

from __future__ import annotations

import math
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cxstream.errors import ConfigurationError
from cxstream.settings import Settings
from cxstream.simulate import SimulationConfig
from dashboards.errors import PanelQueryError
from dashboards.export import build_all
from dashboards.macros import TimeRange
from dashboards.runner import PanelQuery, panel_queries, run_query
from dashboards.testing import simulate
from sinks.clickhouse.backend import ChdbBackend, ClickHouseBackend, ServerBackend
from sinks.clickhouse.migrations import migrate
from sinks.clickhouse.rows import RowBuilder
from sinks.clickhouse.tables import raw_tables

DAY_S = 86_400
DAY_MS = DAY_S * 1000
#: ranges the boards are opened with
RANGES: dict[str, int] = {"24h": DAY_MS, "7d": 7 * DAY_MS, "30d": 30 * DAY_MS}
PARTITIONS = 4
OFFSET_STRIDE = 10**8
#: per-event ids made unique per copy (customers, staff, products stay shared)
COPY_IDS = frozenset(
    {
        "alert_id", "feedback_id", "flag_id", "recommendation_id", "request_id", "session_id",
        "subject_id", "survey_id", "transaction_id",
    }
)  # fmt: skip
#: events of one simulated customer per day besides registration (measured: 2000 customers,
#: one day, seed 1 -> 34.8k events without customer_registered, ~4.3k of them staff)
EVENTS_PER_CUSTOMER_DAY = 15.3
STAFF_EVENTS_PER_DAY = 4_300
ONCE_ONLY = frozenset({"customer_registered"})
DLQ_REASONS = ("truncated", "bad_magic", "unknown_schema_id", "bad_body", "unstorable")
DLQ_SOURCES = ("channel_interaction", "transaction", "access_event", "survey_response")


# -- base data ----------------------------------------------------------------------------------


def _base_columns(
    settings: Settings, options: dict[str, Any], now_ms: int
) -> tuple[dict[str, tuple[tuple[str, ...], list[list[Any]]]], dict[str, Any]]:
    """The base days as raw-table columns, by table, and a description of the base."""
    events = int(options["events"])
    days, base_days = int(options["days"]), int(options["base_days"])
    copies = math.ceil(days / base_days)
    per_day = events / (copies * base_days)
    customers = max(100, int((per_day - STAFF_EVENTS_PER_DAY) / EVENTS_PER_CUSTOMER_DAY))
    config = SimulationConfig(
        start_ms=now_ms - base_days * DAY_MS,
        duration_ms=base_days * DAY_MS,
        customers=customers,
        seed=int(options["seed"]),
    )
    started = time.perf_counter()
    data = simulate(config)
    simulated_s = time.perf_counter() - started
    grouped: dict[str, list[dict[str, Any]]] = {}
    for name, record in data.events:
        grouped.setdefault(name, []).append(record)
    builder = RowBuilder(settings)
    started = time.perf_counter()
    out: dict[str, tuple[tuple[str, ...], list[list[Any]]]] = {}
    for name, records in grouped.items():
        topic = settings.topic(name)
        n = len(records)
        partitions = [i % PARTITIONS for i in range(n)]
        offsets = [i // PARTITIONS for i in range(n)]
        batch, bad = builder.build_columns(
            name, records, [topic] * n, partitions, offsets, [1] * n, 0
        )
        if bad:
            raise ConfigurationError(f"simulated {name} rows not storable: {bad[0][1]}")
        ingest = batch.columns.index("ingest_time")
        occurred = batch.column("occurred_at")
        batch.data[ingest] = [s + 2 for s in occurred]
        out[name] = (batch.columns, batch.data)
    base = {
        "customers": customers,
        "base_days": base_days,
        "copies": copies,
        "simulated_events": len(data.events),
        "simulate_s": round(simulated_s, 1),
        "row_build_s": round(time.perf_counter() - started, 1),
        "by_table": {name: len(cols[1][0]) for name, cols in sorted(out.items())},
    }
    return out, base


# -- loading ------------------------------------------------------------------------------------


def _column_types(backend: ClickHouseBackend, table: str) -> list[tuple[str, str]]:
    rows = backend.query(
        "SELECT name, type FROM system.columns WHERE database = %(db)s AND table = %(t)s",
        {"db": backend.database, "t": table},
    )
    return [(str(n), str(t)) for n, t in rows]


def _shifted(name: str, type_: str, k: int, shift_s: int) -> str:
    if k and name == "event_id":
        return f"concat(substring(event_id, 1, 32), lower(hex(toUInt16({4096 + k}))))"
    if k and name in COPY_IDS:
        return f"concat({name}, '~{k}')"
    if shift_s and "DateTime" in type_:
        return f"{name} - {shift_s}"
    if shift_s and name == "occurred_at_ms":
        return f"{name} - {shift_s * 1000}"
    if k and name == "kafka_offset":
        return f"{name} + {k * OFFSET_STRIDE}"
    return name


def _load(
    backend: ClickHouseBackend,
    base: dict[str, tuple[tuple[str, ...], list[list[Any]]]],
    options: dict[str, Any],
    now_ms: int,
) -> dict[str, Any]:
    db = backend.database
    copies = math.ceil(int(options["days"]) / int(options["base_days"]))
    timings: dict[str, float] = {}
    started = time.perf_counter()
    migrate(backend)
    timings["migrate_s"] = time.perf_counter() - started
    tables = [t.name for t in raw_tables()]
    step = time.perf_counter()
    for name, (columns, data) in base.items():
        backend.execute(f"DROP TABLE IF EXISTS {db}._base_{name}")
        backend.execute(f"CREATE TABLE {db}._base_{name} AS {db}.{name}")
        backend.insert(f"_base_{name}", columns, data)
    timings["base_insert_s"] = time.perf_counter() - step
    step = time.perf_counter()
    for name in tables:
        if name not in base:
            continue
        types = _column_types(backend, name)
        names = ", ".join(n for n, _ in types)
        for k in range(copies if name not in ONCE_ONLY else 1):
            shift_s = k * int(options["base_days"]) * DAY_S
            exprs = ", ".join(_shifted(n, t, k, shift_s) for n, t in types)
            backend.execute(
                f"INSERT INTO {db}.{name} ({names}) SELECT {exprs} FROM {db}._base_{name}"
            )
    timings["replicate_s"] = time.perf_counter() - step
    step = time.perf_counter()
    for name in tables:
        if name in base:
            _sink_batches(backend, name)
    _dead_letters(backend, int(options["events"]) // 20_000, now_ms, int(options["days"]))
    timings["telemetry_s"] = time.perf_counter() - step
    for name in base:
        backend.execute(f"DROP TABLE IF EXISTS {db}._base_{name}")
    timings["total_s"] = time.perf_counter() - started
    rows = _table_rows(backend)
    raw = sum(rows.get(name, 0) for name in tables)
    load_s = timings["base_insert_s"] + timings["replicate_s"]
    return {
        "raw_rows": raw,
        "raw_rows_per_s_base_plus_replicate": round(raw / load_s) if load_s else 0,
        **{k: round(v, 1) for k, v in timings.items()},
        "rows_by_table": rows,
        "active_parts": _parts(backend),
    }


def _sink_batches(backend: ClickHouseBackend, table: str) -> None:
    """One sink_batches row per 10 s and topic of ``table``, from its rows."""
    db = backend.database
    done = "(b * 10000 + 10000)"
    backend.execute(
        f"INSERT INTO {db}.sink_batches (at, at_ms, group_id, worker, target, rows, "
        "fenced_rows, dead_letters, attempts, insert_ms, batch_ms, delay_ms_max, delay_ms_sum) "
        f"SELECT toDateTime(intDiv({done}, 1000)), toUInt64({done}), 'cxstream-sink', "
        "'bench:1', kafka_topic, count(), toUInt64(0), toUInt64(0), toUInt32(1), "
        "toUInt32(4 + count() % 29), toUInt32(9 + count() % 47), "
        f"max(toUInt64({done}) - occurred_at_ms), sum(toUInt64({done}) - occurred_at_ms) "
        f"FROM (SELECT intDiv(occurred_at_ms, 10000) AS b, kafka_topic, occurred_at_ms "
        f"FROM {db}.{table}) GROUP BY b, kafka_topic"
    )


def _dead_letters(backend: ClickHouseBackend, count: int, now_ms: int, days: int) -> None:
    db = backend.database
    count = max(count, 1)
    step_ms = days * DAY_MS // count
    start_ms = now_ms - days * DAY_MS
    reasons = ", ".join(f"'{r}'" for r in DLQ_REASONS)
    sources = ", ".join(f"'cx.{s}'" for s in DLQ_SOURCES)
    at_ms = f"toUInt64({start_ms} + number * {step_ms})"
    backend.execute(
        f"INSERT INTO {db}.dead_letter (at, at_ms, source_topic, source_partition, "
        "source_offset, error_class, reason, step, message, message_length, size, ingest_time, "
        "kafka_topic, kafka_partition, kafka_offset) "
        f"SELECT toDateTime(intDiv({at_ms}, 1000)), {at_ms}, "
        f"arrayElement([{sources}], number % {len(DLQ_SOURCES)} + 1), "
        "toInt32(number % 4), toInt64(number * 7919), 'DecodeError', "
        f"arrayElement([{reasons}], number % {len(DLQ_REASONS)} + 1), 'decode', "
        "CAST(NULL AS Nullable(String)), toUInt32(40), toUInt32(12 + number % 200), "
        f"toDateTime(intDiv({at_ms}, 1000) + 1), 'cx.dlq', toUInt16(0), number "
        f"FROM numbers({count})"
    )


def _table_rows(backend: ClickHouseBackend) -> dict[str, int]:
    rows = backend.query(
        "SELECT table, sum(rows) FROM system.parts WHERE database = %(db)s AND active "
        "GROUP BY table ORDER BY table",
        {"db": backend.database},
    )
    return {str(t): int(n) for t, n in rows}


def _parts(backend: ClickHouseBackend) -> int:
    rows = backend.query(
        "SELECT count() FROM system.parts WHERE database = %(db)s AND active",
        {"db": backend.database},
    )
    return int(rows[0][0])


# -- queries ------------------------------------------------------------------------------------


def _time_queries(
    backend: ClickHouseBackend, queries: Sequence[PanelQuery], repeats: int, cutoff_ms: float
) -> list[dict[str, Any]]:
    out = []
    for query in queries:
        runs: list[float] = []
        error = None
        rows = 0
        for _ in range(repeats):
            try:
                result = run_query(backend, query)
            except PanelQueryError as exc:
                error = str(exc).splitlines()[0][:300]
                break
            runs.append(result.elapsed_ms)
            rows = len(result.rows)
            if result.elapsed_ms > cutoff_ms:
                break
        out.append(
            {
                "board": query.board,
                "panel": f"{query.panel_id} {query.title} ({query.ref_id})",
                "median_ms": round(statistics.median(runs), 1) if runs else None,
                "max_ms": round(max(runs), 1) if runs else None,
                "runs": len(runs),
                "result_rows": rows,
                "error": error,
                "sql": query.sql,
            }
        )
    return out


def _summarise(timed: dict[str, list[dict[str, Any]]], threshold_ms: float) -> dict[str, Any]:
    boards: dict[str, dict[str, Any]] = {}
    over: dict[str, str] = {}
    over_sql: dict[str, str] = {}
    errors: list[str] = []
    everything: list[tuple[float, str]] = []
    panels: dict[str, list[str]] = {}
    for range_name, results in timed.items():
        for uid in dict.fromkeys(r["board"] for r in results):
            mine = [r for r in results if r["board"] == uid]
            medians = [r["median_ms"] for r in mine if r["median_ms"] is not None]
            maxes = [r["max_ms"] for r in mine if r["max_ms"] is not None]
            boards.setdefault(uid, {})[range_name] = {
                "panels": len(mine),
                "median_of_panel_medians_ms": round(statistics.median(medians), 1)
                if medians
                else None,
                "max_ms": max(maxes) if maxes else None,
                "sum_of_medians_ms": round(sum(medians), 1),
                "over_threshold": sum(1 for m in medians if m > threshold_ms),
            }
        for r in results:
            name = f"{r['board']}/{r['panel']}"
            if r["error"]:
                errors.append(f"{range_name} {name}: {r['error']}")
                continue
            panels.setdefault(name, []).append(
                f"{range_name} {r['median_ms']:.0f}/{r['max_ms']:.0f}"
            )
            everything.append((r["median_ms"], f"{range_name} {name}"))
            if r["median_ms"] > threshold_ms:
                key = f"{range_name} {name}"
                over[key] = f"median {r['median_ms']:.0f} ms, max {r['max_ms']:.0f} ms"
                over_sql[key] = r["sql"]
    everything.sort(reverse=True)
    all_medians = [m for m, _ in everything]
    return {
        "queries": len(all_medians),
        "median_ms": round(statistics.median(all_medians), 1) if all_medians else None,
        "max_median_ms": everything[0][0] if everything else None,
        "over_threshold_count": len(over),
        "over_threshold": over,
        "slowest": {str(i): f"{m:.0f} ms {name}" for i, (m, name) in enumerate(everything[:10], 1)},
        "errors": {str(i): e for i, e in enumerate(errors, 1)},
        "boards": boards,
        "panels_median_max_ms": {k: " · ".join(v) for k, v in panels.items()},
        "over_threshold_sql": over_sql,
    }


# -- backends -----------------------------------------------------------------------------------


def _bench_settings(settings: Settings, database: str) -> Settings:
    ch = settings.clickhouse
    update: dict[str, Any] = {"database": database}
    if not ch.host:
        update.update(host="127.0.0.1", port=settings.stack.clickhouse_port)
    return settings.model_copy(update={"clickhouse": ch.model_copy(update=update)})


def _run_backend(
    backend: ClickHouseBackend,
    base: dict[str, tuple[tuple[str, ...], list[list[Any]]]],
    options: dict[str, Any],
    now_ms: int,
) -> dict[str, Any]:
    result: dict[str, Any] = {"version": backend.server_version()}
    result["load"] = _load(backend, base, options, now_ms)
    boards = build_all()
    query_now = int(time.time() * 1000)
    timed: dict[str, list[dict[str, Any]]] = {}
    started = time.perf_counter()
    for range_name, span in RANGES.items():
        window = TimeRange(query_now - span, query_now)
        queries = [q for board in boards.values() for q in panel_queries(board, window)]
        timed[range_name] = _time_queries(
            backend, queries, int(options["repeats"]), float(options["slow_cutoff_ms"])
        )
    result["query_phase_s"] = round(time.perf_counter() - started, 1)
    result["queries"] = _summarise(timed, float(options["threshold_ms"]))
    return result


def run(settings: Settings, **options: Any) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "events": 10_000_000,
        "backend": "both",
        "days": 30,
        "base_days": 3,
        "repeats": 5,
        "slow_cutoff_ms": 5000,
        "threshold_ms": 500,
        "keep": False,
        "seed": 7,
        **options,
    }
    kinds = {"both": ["server", "chdb"], "server": ["server"], "chdb": ["chdb"]}.get(
        str(opts["backend"])
    )
    if kinds is None:
        raise ConfigurationError(f"backend={opts['backend']!r}: expected server, chdb or both")
    database = f"bench_boards_{uuid.uuid4().hex[:8]}"
    bench_settings = _bench_settings(settings, database)
    now_ms = int(time.time() * 1000) // 60_000 * 60_000
    started = time.perf_counter()
    base, base_info = _base_columns(bench_settings, opts, now_ms)
    base_info["prepare_s"] = round(time.perf_counter() - started, 1)
    out: dict[str, Any] = {
        "figure": "every board query <= 500 ms on 10 million raw events (chdb and server)",
        "method": (
            f"{base_info['base_days']} simulated days ({base_info['customers']} customers) "
            f"replicated {base_info['copies']}x in SQL with shifted timestamps and ids "
            "(INSERT ... SELECT into the raw tables: all materialized views fire); "
            "panel SQL via dashboards.runner for the last 24h/7d/30d"
        ),
        "base": base_info,
        "backends": {},
    }
    for kind in kinds:
        backend: ClickHouseBackend
        tmp: Path | None = None
        if kind == "server":
            backend = ServerBackend(bench_settings)
        else:
            tmp = Path(tempfile.mkdtemp(prefix="cxstream-bench-boards-chdb-"))
            backend = ChdbBackend(bench_settings, path=tmp)
        try:
            result = _run_backend(backend, base, opts, now_ms)
            out["backends"][kind] = result
        finally:
            if kind == "server" and not opts["keep"]:
                backend.execute(f"DROP DATABASE IF EXISTS {database}")
            backend.close()
            if tmp is not None and not opts["keep"]:
                shutil.rmtree(tmp, ignore_errors=True)
    verdict = {
        kind: result["queries"]["over_threshold_count"] == 0 and not result["queries"]["errors"]
        for kind, result in out["backends"].items()
    }
    out["meets_target"] = verdict
    return out
