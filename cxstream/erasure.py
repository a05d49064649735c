"""Building blocks of the right to erasure (PIPL / GDPR): remove a customer, audit it, and keep
the customer out on replay.

- :func:`erase_from_clickhouse` deletes the customer's rows from every table of the database
  that names a customer: columns ``customer_id``, ``principal_id``, ``target_customer_id`` hold
  the id in clear, ``customer_pseudonym`` its keyed pseudonym, and ``AggregateFunction(any...)``
  columns of those names (``feedback_lifecycle``) are matched through ``finalizeAggregation``.
  Tables are found in ``system.columns``, so tables added later are covered without code here.
  The count rollups (``*_1m``/``*_1h``/``*_1d``) hold sums per time bucket and dimension, no
  customer: they stay, so KPI history keeps its counts (no one can be told apart in them).
  Deletion is ``ALTER TABLE ... DELETE`` (a mutation; both ClickHouse 18.16 and 26 run it
  asynchronously), then the call waits until ``system.mutations`` reports them done.
- :func:`erase_from_redis` (and :func:`erase_from_redis_async`) deletes every Redis key of the
  customer: ``{prefix}:profile:{id}``, ``{prefix}:reco:{id}`` and whatever a SCAN finds under
  ``{prefix}:*:{id}`` / ``{prefix}:*:{id}:*`` (and the same with the pseudonym).
- :class:`ErasureLedger` writes ``erasure_audit`` rows and ``erased_customers`` marks
  (migration ``0008_erasure.sql``); neither holds the customer id in clear.
- :class:`BlockList` answers "drop this event?" in memory: events of an erased customer that
  occurred at or before the erasure (the erasure request itself included, whose id is in
  clear) are dropped by processors and the sink. Marks are small JSON values, so a Faust table
  can hold them (erasure requests are keyed by customer id, like every customer's events, so a
  partition's marks live in that partition's table); :class:`RedisBlockListStore` and
  :meth:`ErasureLedger.block_list` share them across processes.

Every effect is idempotent: deleting what is gone deletes nothing, audit rows and marks are
ReplacingMergeTree rows with a fixed key, Redis marks keep the latest erasure time (ZADD GT).
The pseudonym depends on ``privacy.pseudonym_key``: rotating that key needs the block list
re-keyed from the audit trail's pseudonyms (not built yet).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from cxstream.errors import ServiceError
from cxstream.privacy import pseudonymise
from cxstream.settings import Settings

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from sinks.clickhouse.backend import ClickHouseBackend

log = logging.getLogger(__name__)

#: columns that hold a customer id in clear (principal_id: customers are principals too)
CLEAR_ID_COLUMNS: tuple[str, ...] = ("customer_id", "principal_id", "target_customer_id")
#: columns that hold the keyed pseudonym of a customer id
PSEUDONYM_COLUMNS: tuple[str, ...] = ("customer_pseudonym",)
#: tables of this module: they name customers by pseudonym on purpose and are never erased
LEDGER_TABLES: frozenset[str] = frozenset({"erasure_audit", "erased_customers"})
_STRING_TYPE = re.compile(r"^(LowCardinality\()?(Nullable\()?String\)?\)?$")
_AGGREGATE_TYPE = re.compile(r"^AggregateFunction\((any|anyLast), (Nullable\()?String\)?\)$")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
_SCAN_COUNT = 1000


def customer_pseudonym(customer_id: str, settings: Settings) -> str:
    """The keyed pseudonym a customer id has everywhere (alerts, audit, block list)."""
    return pseudonymise(customer_id, settings)


# -- block list -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErasureMark:
    """One erased customer: events at or before ``erased_at_ms`` are dropped."""

    pseudonym: str
    erased_at_ms: int
    request_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ErasureMark:
        return cls(str(value["pseudonym"]), int(value["erased_at_ms"]), str(value["request_id"]))

    @classmethod
    def from_request(cls, record: Mapping[str, Any], settings: Settings) -> ErasureMark:
        """The mark of an ``erasure_requested`` record: its event time is the erasure time, so
        a replayed request gives the same mark."""
        return cls(
            customer_pseudonym(str(record["customer_id"]), settings),
            int(record["occurred_at"]),
            str(record.get("request_id") or record["event_id"]),
        )


class BlockList:
    """Erased customers by pseudonym, with the time of their latest erasure.

    ``drops(record)`` checks the clear id columns and ``customer_pseudonym`` of a decoded
    record against the list, and compares ``occurred_at`` (epoch ms) with the erasure time.
    """

    def __init__(self, settings: Settings, marks: Iterable[ErasureMark] = ()) -> None:
        self._settings = settings
        self._erased: dict[str, ErasureMark] = {}
        # ids seen on the hot path -> pseudonym (HMAC per event would dominate a check)
        self._pseudonyms: dict[str, str] = {}
        for mark in marks:
            self.add(mark)

    def __len__(self) -> int:
        return len(self._erased)

    def __iter__(self) -> Iterator[ErasureMark]:
        return iter(self._erased.values())

    def add(self, mark: ErasureMark) -> bool:
        """Add or extend a mark (the later erasure time wins); True if the list changed."""
        known = self._erased.get(mark.pseudonym)
        if known is not None and known.erased_at_ms >= mark.erased_at_ms:
            return False
        self._erased[mark.pseudonym] = mark
        return True

    def mark_of(self, customer_id: str) -> ErasureMark | None:
        return self._erased.get(self._pseudonym(customer_id))

    def _pseudonym(self, customer_id: str) -> str:
        pseudonym = self._pseudonyms.get(customer_id)
        if pseudonym is None:
            if len(self._pseudonyms) > 1 << 16:
                self._pseudonyms.clear()
            pseudonym = self._pseudonyms[customer_id] = customer_pseudonym(
                customer_id, self._settings
            )
        return pseudonym

    def blocks(self, customer_id: str | None, occurred_at_ms: int) -> bool:
        """Whether an event of ``customer_id`` at ``occurred_at_ms`` must be dropped."""
        if not customer_id or not self._erased:
            return False
        mark = self._erased.get(self._pseudonym(customer_id))
        return mark is not None and occurred_at_ms <= mark.erased_at_ms

    def drops(self, record: Mapping[str, Any]) -> bool:
        """Whether a decoded event (any type) names an erased customer before the erasure."""
        if not self._erased:
            return False
        occurred = int(record.get("occurred_at") or 0)
        for name in CLEAR_ID_COLUMNS:
            if self.blocks(record.get(name), occurred):
                return True
        for name in PSEUDONYM_COLUMNS:
            mark = self._erased.get(record.get(name) or "")
            if mark is not None and occurred <= mark.erased_at_ms:
                return True
        return False


class RedisBlockListStore:
    """The block list in one Redis sorted set, ``{prefix}:erased`` (member pseudonym, score
    erasure time in ms), shared by every worker and sink."""

    def __init__(self, client: redis.Redis, settings: Settings, *, prefix: str | None = None):
        self.client = client
        self.settings = settings
        self.key = f"{prefix or settings.kafka.topic_prefix}:erased"

    def add(self, mark: ErasureMark) -> None:
        # GT: a replayed older request never moves the erasure time back
        self.client.zadd(self.key, {mark.pseudonym: mark.erased_at_ms}, gt=True)

    def load(self) -> BlockList:
        rows: list[tuple[bytes | str, float]] = self.client.zrange(  # type: ignore[assignment]
            self.key, 0, -1, withscores=True
        )
        return BlockList(
            self.settings,
            (ErasureMark(_text(member), int(score)) for member, score in rows),
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- ClickHouse -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErasureTarget:
    """A table holding customers, and the condition that selects one customer's rows."""

    table: str
    #: ``%(id)s`` is the clear id, ``%(pseudonym)s`` the pseudonym
    condition: str
    columns: tuple[str, ...]


def erasure_targets(backend: ClickHouseBackend) -> list[ErasureTarget]:
    """Every MergeTree table of the database with a customer id or pseudonym column."""
    rows = backend.query(
        "SELECT c.table, c.name, c.type FROM system.columns AS c "
        "WHERE c.database = %(db)s AND c.name IN %(names)s ORDER BY c.table, c.name",
        {"db": backend.database, "names": (*CLEAR_ID_COLUMNS, *PSEUDONYM_COLUMNS)},
    )
    engines = dict(
        backend.query(
            "SELECT name, engine FROM system.tables WHERE database = %(db)s",
            {"db": backend.database},
        )
    )
    by_table: dict[str, list[tuple[str, str]]] = {}
    for table, name, type_ in rows:
        if table in LEDGER_TABLES or not str(engines.get(table, "")).endswith("MergeTree"):
            continue  # views have no rows of their own; the ledger is pseudonymous on purpose
        by_table.setdefault(table, []).append((name, type_))
    targets = []
    for table, columns in sorted(by_table.items()):
        clauses = []
        for name, type_ in columns:
            param = "pseudonym" if name in PSEUDONYM_COLUMNS else "id"
            if _STRING_TYPE.match(type_):
                # ifNull: on 18.16 a NULL condition deletes the row (checked), so NULL ids must
                # compare false explicitly
                clauses.append(f"ifNull({name}, '') = %({param})s")
            elif _AGGREGATE_TYPE.match(type_):
                clauses.append(f"ifNull(finalizeAggregation({name}), '') = %({param})s")
            else:
                log.warning("erasure: %s.%s has type %s; not matched", table, name, type_)
        if clauses:
            names = tuple(name for name, _ in columns)
            targets.append(ErasureTarget(table, " OR ".join(clauses), names))
    return targets


@dataclass(frozen=True)
class ClickHouseErasure:
    """What :func:`erase_from_clickhouse` removed: rows per table (counted before deleting)."""

    rows: dict[str, int]
    seconds: float

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def erase_from_clickhouse(
    backend: ClickHouseBackend,
    settings: Settings,
    customer_id: str,
    *,
    timeout: float = 60.0,
) -> ClickHouseErasure:
    """Delete every row naming ``customer_id`` and wait until the deletions are applied.

    Raises :class:`~cxstream.errors.ServiceError` (naming the tables) when the mutations are not
    done within ``timeout`` seconds; calling again is safe.
    """
    if not customer_id:
        raise ValueError("erase_from_clickhouse: customer_id is empty")
    started = time.monotonic()
    params = {"id": customer_id, "pseudonym": customer_pseudonym(customer_id, settings)}
    db = backend.database
    removed: dict[str, int] = {}
    for target in erasure_targets(backend):
        select = f"SELECT count() FROM {db}.{target.table} WHERE {target.condition}"
        count = int(backend.query(select, params)[0][0])
        if count == 0:
            continue  # no mutation: rewriting parts costs I/O even when nothing matches
        backend.execute(f"ALTER TABLE {db}.{target.table} DELETE WHERE {target.condition}", params)
        removed[target.table] = count
    wait_for_mutations(backend, list(removed), timeout=timeout)
    return ClickHouseErasure(removed, time.monotonic() - started)


def wait_for_mutations(backend: ClickHouseBackend, tables: list[str], *, timeout: float) -> None:
    """Wait until ``tables`` have no unfinished mutation."""
    if not tables:
        return
    deadline = time.monotonic() + timeout
    pause = 0.02
    while True:
        pending = backend.query(
            "SELECT table, count() FROM system.mutations WHERE database = %(db)s "
            "AND table IN %(tables)s AND is_done = 0 GROUP BY table",
            {"db": backend.database, "tables": tuple(tables)},
        )
        if not pending:
            return
        if time.monotonic() > deadline:
            waiting = ", ".join(f"{table} ({n})" for table, n in pending)
            raise ServiceError(
                f"erasure: ClickHouse mutations not done after {timeout:.0f} s: {waiting}"
            )
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


@dataclass(frozen=True)
class AuditRecord:
    """One step of one erasure request, as ``erasure_audit`` keeps it."""

    pseudonym: str
    request_id: str
    step: str
    requested_at_ms: int
    status: str = "done"
    rows_removed: int = 0
    detail: str = ""


class ErasureLedger:
    """``erasure_audit`` and ``erased_customers`` in ClickHouse (migration 0008)."""

    def __init__(self, backend: ClickHouseBackend, settings: Settings) -> None:
        self.backend = backend
        self.settings = settings

    def record(self, audit: AuditRecord, *, now_ms: int | None = None) -> None:
        """Write one audit row (a replay of the same request and step replaces it)."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        self.backend.insert(
            "erasure_audit",
            (
                "pseudonym", "request_id", "step", "status", "requested_at", "requested_at_ms",
                "rows_removed", "detail", "recorded_at", "recorded_at_ms",
            ),
            [
                [audit.pseudonym], [audit.request_id], [audit.step], [audit.status],
                [audit.requested_at_ms // 1000], [audit.requested_at_ms], [audit.rows_removed],
                [audit.detail], [now // 1000], [now],
            ],
        )  # fmt: skip

    def record_step(self, audit: AuditRecord, *, now_ms: int | None = None) -> AuditRecord:
        """Record a finished step so that replays keep the first account: a re-run that
        removed nothing writes nothing, one that removed more adds to the count."""
        rows = self.backend.query(
            "SELECT rows_removed, detail FROM "
            f"{self.backend.database}.erasure_audit FINAL WHERE pseudonym = %(p)s "
            "AND request_id = %(r)s AND step = %(s)s",
            {"p": audit.pseudonym, "r": audit.request_id, "s": audit.step},
        )
        if rows and audit.status == "done":
            if audit.rows_removed == 0:
                return replace(audit, rows_removed=int(rows[0][0]), detail=str(rows[0][1]))
            audit = replace(audit, rows_removed=int(rows[0][0]) + audit.rows_removed)
        self.record(audit, now_ms=now_ms)
        return audit

    def mark_erased(self, mark: ErasureMark, *, now_ms: int | None = None) -> None:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        self.backend.insert(
            "erased_customers",
            ("pseudonym", "erased_at", "erased_at_ms", "request_id", "recorded_at"),
            [
                [mark.pseudonym], [mark.erased_at_ms // 1000], [mark.erased_at_ms],
                [mark.request_id], [now // 1000],
            ],
        )  # fmt: skip

    def audit_trail(self, customer_id: str) -> list[AuditRecord]:
        """Audit rows of a customer (looked up by pseudonym), oldest request first."""
        rows = self.backend.query(
            "SELECT pseudonym, request_id, step, requested_at_ms, status, rows_removed, detail "
            f"FROM {self.backend.database}.erasure_audit FINAL WHERE pseudonym = %(p)s "
            "ORDER BY requested_at_ms, request_id, step",
            {"p": customer_pseudonym(customer_id, self.settings)},
        )
        return [AuditRecord(p, r, s, int(at), st, int(n), d) for p, r, s, at, st, n, d in rows]

    def block_list(self) -> BlockList:
        """Every erased customer with the latest erasure time."""
        rows = self.backend.query(
            "SELECT pseudonym, max(erased_at_ms), argMax(request_id, erased_at_ms) "
            f"FROM {self.backend.database}.erased_customers GROUP BY pseudonym"
        )
        return BlockList(self.settings, (ErasureMark(p, int(at), str(req)) for p, at, req in rows))


def erase_customer_from_clickhouse(
    backend: ClickHouseBackend, settings: Settings, request: Mapping[str, Any]
) -> ClickHouseErasure:
    """An ``erasure_requested`` record, end to end for ClickHouse: mark the customer erased
    first (so a sink landing a replay meanwhile is already blocked), delete, then audit."""
    ledger = ErasureLedger(backend, settings)
    mark = ErasureMark.from_request(request, settings)
    ledger.mark_erased(mark)
    result = erase_from_clickhouse(backend, settings, str(request["customer_id"]))
    detail = json.dumps(result.rows, sort_keys=True)
    ledger.record_step(
        AuditRecord(mark.pseudonym, mark.request_id, "clickhouse", mark.erased_at_ms,
                    rows_removed=result.total, detail=detail)
    )  # fmt: skip
    return result


# -- Redis ------------------------------------------------------------------------------------


def redis_patterns(
    settings: Settings, customer_id: str, *, prefix: str | None = None
) -> dict[str, list[str]]:
    """Exact keys and SCAN patterns of a customer's Redis keys.

    ``prefix`` defaults to ``settings.kafka.topic_prefix`` (``cx``). Patterns match whole key
    segments only, so erasing ``c1`` never touches ``c12``; glob characters in ids are escaped.
    """
    base = prefix or settings.kafka.topic_prefix
    pseudonym = customer_pseudonym(customer_id, settings)
    patterns = []
    for ident in (customer_id, pseudonym):
        escaped = _GLOB_SPECIAL.sub(r"\\\1", ident)
        patterns += [f"{base}:*:{escaped}", f"{base}:*:{escaped}:*"]
    return {
        "keys": [f"{base}:profile:{customer_id}", f"{base}:reco:{customer_id}"],
        "patterns": patterns,
    }


def erase_from_redis(
    client: redis.Redis, settings: Settings, customer_id: str, *, prefix: str | None = None
) -> list[str]:
    """Delete every key of ``customer_id``; returns the keys that existed and were deleted."""
    if not customer_id:
        raise ValueError("erase_from_redis: customer_id is empty")
    spec = redis_patterns(settings, customer_id, prefix=prefix)
    found: set[str] = {_text(k) for k in spec["keys"]}
    try:
        for pattern in spec["patterns"]:
            found.update(_text(k) for k in client.scan_iter(match=pattern, count=_SCAN_COUNT))
        keys = sorted(found)
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.unlink(key)
        results = pipe.execute()
    except Exception as exc:  # redis raises its own hierarchy; name the step for the caller
        raise ServiceError(f"erasure: Redis keys of a customer not deleted: {exc}") from exc
    return [key for key, n in zip(keys, results, strict=True) if n]


async def erase_from_redis_async(
    client: redis.asyncio.Redis,
    settings: Settings,
    customer_id: str,
    *,
    prefix: str | None = None,
) -> list[str]:
    """:func:`erase_from_redis` for ``redis.asyncio`` clients (Faust processors)."""
    if not customer_id:
        raise ValueError("erase_from_redis_async: customer_id is empty")
    spec = redis_patterns(settings, customer_id, prefix=prefix)
    found: set[str] = {_text(k) for k in spec["keys"]}
    try:
        for pattern in spec["patterns"]:
            async for key in client.scan_iter(match=pattern, count=_SCAN_COUNT):
                found.add(_text(key))
        keys = sorted(found)
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.unlink(key)
        results = await pipe.execute()
    except Exception as exc:
        raise ServiceError(f"erasure: Redis keys of a customer not deleted: {exc}") from exc
    return [key for key, n in zip(keys, results, strict=True) if n]
