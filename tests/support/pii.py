"""Search every place cxstream writes to for planted clear-text values (PII scans, erasure).

:func:`scan_for_planted_pii` looks through ClickHouse (every string-like column of every table
of a database), Redis (key names and values of every type), Kafka topics (keys, values and
headers of every message from the start) and log files, and returns one :class:`Finding` per
place a planted value turns up. Matching is case-insensitive substring search, so a value
inside a longer text or in a JSON blob is found too.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxstream.settings import Settings
from streams.kafka_config import confluent_config

if TYPE_CHECKING:
    import redis

    from sinks.clickhouse.backend import ClickHouseBackend

#: longest a scan of the Kafka topics may take (a partition that never reaches its end)
KAFKA_SCAN_SECONDS = 60.0


@dataclass(frozen=True)
class Finding:
    """A planted value found: where (``clickhouse:db.table.column``, ``redis:<key>``,
    ``kafka:<topic>/<partition>@<offset>``, ``log:<path>:<line>``) and which value."""

    source: str
    value: str


@dataclass
class PiiSources:
    """Where to look. Every part is optional."""

    clickhouse: ClickHouseBackend | None = None
    #: tables to skip (e.g. the erasure ledger, which holds pseudonyms on purpose)
    clickhouse_skip: frozenset[str] = frozenset()
    redis: redis.Redis | None = None
    redis_match: str = "*"
    #: settings to reach Kafka, and the topics to read from their beginning
    kafka_settings: Settings | None = None
    kafka_topics: Sequence[str] = ()
    logs: Sequence[Path] = field(default_factory=list)


def scan_for_planted_pii(values: Iterable[str], sources: PiiSources) -> list[Finding]:
    """Every place where one of ``values`` appears in clear text."""
    needles = sorted({v for v in values if v})
    if not needles:
        raise ValueError("scan_for_planted_pii: no values to look for")
    findings: list[Finding] = []
    if sources.clickhouse is not None:
        findings += _scan_clickhouse(sources.clickhouse, needles, sources.clickhouse_skip)
    if sources.redis is not None:
        findings += _scan_redis(sources.redis, needles, sources.redis_match)
    if sources.kafka_settings is not None and sources.kafka_topics:
        findings += _scan_kafka(sources.kafka_settings, sources.kafka_topics, needles)
    for path in sources.logs:
        findings += _scan_log(path, needles)
    return findings


def _hits(blob: bytes | str | None, needles: Sequence[str]) -> Iterator[str]:
    if not blob:
        return
    text = (blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob).casefold()
    for needle in needles:
        if needle.casefold() in text:
            yield needle


def _scan_clickhouse(
    backend: ClickHouseBackend, needles: Sequence[str], skip: frozenset[str]
) -> list[Finding]:
    db = backend.database
    rows = backend.query(
        "SELECT table, name, type FROM system.columns WHERE database = %(db)s ORDER BY table, name",
        {"db": db},
    )
    engines = dict(
        backend.query("SELECT name, engine FROM system.tables WHERE database = %(db)s", {"db": db})
    )
    columns: dict[str, list[str]] = {}
    for table, name, type_ in rows:
        stored = str(engines.get(table, "")).endswith("MergeTree")  # views hold no rows
        if table in skip or not stored or "String" not in type_:
            continue
        # aggregate states (feedback_lifecycle's customer_id) are searched by their value
        expr = f"finalizeAggregation({name})" if type_.startswith("AggregateFunction") else name
        columns.setdefault(table, []).append(expr)
    findings = []
    for table, exprs in columns.items():
        checks = [(e, n) for e in exprs for n in needles]
        params = {f"n{i}": n for i, n in enumerate(needles)}
        select = ", ".join(
            f"countIf(positionCaseInsensitive(ifNull(toString({e}), ''), %(n{needles.index(n)})s)"
            " > 0)"
            for e, n in checks
        )
        counts = backend.query(f"SELECT {select} FROM {db}.{table}", params)[0]
        findings += [
            Finding(f"clickhouse:{db}.{table}.{e}", n)
            for (e, n), hits in zip(checks, counts, strict=True)
            if hits
        ]
    return findings


def _redis_values(client: redis.Redis, key: bytes) -> list[Any]:
    kind = client.type(key)
    kind = kind.decode() if isinstance(kind, bytes) else kind
    if kind == "string":
        return [client.get(key)]
    if kind == "hash":
        return [x for pair in client.hgetall(key).items() for x in pair]
    if kind == "list":
        return list(client.lrange(key, 0, -1))
    if kind == "set":
        return list(client.smembers(key))
    if kind == "zset":
        return list(client.zrange(key, 0, -1))
    if kind == "stream":
        entries: list[Any] = client.xrange(key)  # type: ignore[assignment]
        return [x for _, fields in entries for pair in fields.items() for x in pair]
    return []


def _scan_redis(client: redis.Redis, needles: Sequence[str], match: str) -> list[Finding]:
    findings = []
    for key in client.scan_iter(match=match, count=1000):
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        found = set(_hits(name, needles))
        for value in _redis_values(client, key):
            found.update(_hits(value if isinstance(value, bytes | str) else str(value), needles))
        findings += [Finding(f"redis:{name}", n) for n in sorted(found)]
    return findings


def _scan_kafka(settings: Settings, topics: Sequence[str], needles: Sequence[str]) -> list[Finding]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        confluent_config(settings, **{"group.id": "pii-scan", "enable.auto.commit": False})
    )
    findings = []
    try:
        metadata = consumer.list_topics(timeout=10)
        wanted: list[TopicPartition] = []
        ends: dict[tuple[str, int], int] = {}
        for topic in topics:
            meta = metadata.topics.get(topic)
            if meta is None or meta.error is not None:
                continue
            for partition in meta.partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10
                )
                if high > low:
                    wanted.append(TopicPartition(topic, partition, low))
                    ends[(topic, partition)] = high
        if not wanted:
            return []
        consumer.assign(wanted)
        deadline = time.monotonic() + KAFKA_SCAN_SECONDS
        while ends:
            if time.monotonic() > deadline:
                raise TimeoutError(f"PII scan: Kafka partitions not read to their end: {ends}")
            for message in consumer.consume(1000, timeout=5):
                if message.error() is not None:
                    continue
                where = (str(message.topic()), int(message.partition() or 0))
                offset = int(message.offset() or 0)
                blobs: list[str | bytes | None] = [message.key(), message.value()]
                headers: Any = message.headers() or []
                blobs += [value for _, value in headers]
                found = {n for blob in blobs for n in _hits(blob, needles)}
                findings += [
                    Finding(f"kafka:{where[0]}/{where[1]}@{offset}", n) for n in sorted(found)
                ]
                if where in ends and offset + 1 >= ends[where]:
                    del ends[where]
    finally:
        consumer.close()
    return findings


def _scan_log(path: Path, needles: Sequence[str]) -> list[Finding]:
    findings = []
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            findings += [Finding(f"log:{path}:{number}", n) for n in _hits(line, needles)]
    return findings
