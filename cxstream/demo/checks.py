"""The demo's final verdict: exact checks of every part against what was produced.

- Every event type's topic (inputs and the processors' outputs) against ClickHouse: the same
  set of event ids, each once in query results (``FINAL``). The compacted profile topic may
  hold fewer than ClickHouse stored (compaction), so there every id on the topic must be stored.
- The worker's channel counts equal the valid interactions; every poison pill was dead-lettered
  once by the worker and once by the sink, and nothing else was.
- Every customer seen in the input has a live profile in Redis (erased customers excepted).
- On-call received every alert and security flag on the topics, once each (after the
  receiver's dedupe by webhook-id), and nothing that was not raised.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from cxstream.demo.observe import Observer, Snapshot
from cxstream.settings import Settings

Check = tuple[bool, str]


def read_topic(
    observer: Observer, topic: str, fields: Iterable[str] | None
) -> tuple[list[dict[str, Any]], int]:
    """``fields`` (``None``: all) of every decodable event on ``topic``, and how many did not
    decode."""
    from confluent_kafka import Consumer, TopicPartition

    from streams.codec import build_codec
    from streams.kafka_config import confluent_config

    settings = observer.settings
    marks = observer.high_watermarks(topic)
    codec = build_codec(settings)
    consumer = Consumer(
        confluent_config(
            settings,
            **{"group.id": "cxstream-demo-checks", "enable.auto.commit": False},
        )
    )
    wanted = None if fields is None else tuple(fields)
    out: list[dict[str, Any]] = []
    undecodable = 0
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p, high in marks.items() if high > 0])
        remaining = {p: high for p, high in marks.items() if high > 0}
        while remaining:
            batch = consumer.consume(num_messages=5000, timeout=2.0)
            if not batch:
                break  # the checks below report what is missing
            for message in batch:
                if message.error() is not None:
                    continue
                partition, offset = message.partition() or 0, message.offset() or 0
                if offset + 1 >= remaining.get(partition, offset + 2):
                    del remaining[partition]
                value = message.value()
                try:
                    record = codec.decode(value).record if value else None
                except Exception:
                    record = None
                if record is None:
                    undecodable += 1
                    continue
                out.append(dict(record) if wanted is None else {n: record.get(n) for n in wanted})
    finally:
        consumer.close()
    return out, undecodable


def _stored_ids(observer: Observer, table: str) -> tuple[Counter[str], int]:
    db = observer.backend.database
    ids = Counter(str(r[0]) for r in observer.backend.query(f"SELECT event_id FROM {db}.{table}"))
    final = int(observer.backend.query(f"SELECT count() FROM {db}.{table} FINAL")[0][0])
    return ids, final


def final_checks(
    observer: Observer, snap: Snapshot, poison: int, *, exact_dead_letters: bool = True
) -> list[Check]:
    """The checks above; ``exact_dead_letters=False`` leaves out the dead-letter count (after a
    crash a replay may dead-letter a pill again: the fault suite checks distinct sources)."""
    from sinks.clickhouse.tables import event_tables
    from streams.topics import INPUT_EVENTS, OUTPUT_EVENTS

    settings: Settings = observer.settings
    checks: list[Check] = []
    tables = {table.event: table.name for table in event_tables()}
    customers: set[str] = set()
    erased: set[str] = set()
    raised: set[str] = set()
    interactions = 0
    for event in (*INPUT_EVENTS, *OUTPUT_EVENTS):
        topic = settings.topic(event)
        fields = ["event_id", "customer_id", "alert_id", "flag_id"]
        records, undecodable = read_topic(observer, topic, fields)
        if not records and not undecodable:
            continue
        produced = {str(r["event_id"]) for r in records}
        if event in INPUT_EVENTS:
            customers.update(str(r["customer_id"]) for r in records if r.get("customer_id"))
        if event == "erasure_requested":
            erased.update(str(r["customer_id"]) for r in records)
        if event == "channel_interaction":
            interactions = len(records)
        if event == "alert":
            raised.update(str(r["alert_id"]) for r in records)
        if event == "security_flag":
            raised.update(str(r["flag_id"]) for r in records)
        stored, final = _stored_ids(observer, tables[event])
        if OUTPUT_EVENTS.get(event, 0) is None:  # compacted
            ok = produced <= set(stored) and final == len(stored)
            relation = "all stored"
        else:
            ok = produced == set(stored) and final == len(produced)
            relation = "same ids"
        checks.append(
            (
                ok,
                f"ClickHouse {event}: {final:,} rows (FINAL) for {len(produced):,} distinct ids "
                f"on the topic ({len(records):,} messages; {relation}"
                + (f", missing {len(produced - set(stored)):,}" if produced - set(stored) else "")
                + ")",
            )
        )
    counted = ((snap.worker or {}).get("channel_counts") or {}).get("total", -1)
    checks.append(
        (counted == interactions, f"worker counted {counted:,} of {interactions:,} interactions")
    )
    # the worker's lane and the sink both read the interaction topic: each dead-letters a pill
    if exact_dead_letters:
        checks.append(
            (
                snap.dead_letters == 2 * poison,
                f"{snap.dead_letters} dead letters for {poison} poison pills (worker + sink)",
            )
        )
    checks.append(_profiles_check(observer, customers - erased))
    checks.append(_oncall_check(observer, raised))
    return checks


def _profiles_check(observer: Observer, customers: set[str]) -> Check:
    prefix = observer.profile_pattern[:-1]
    keys = {
        key.decode()[len(prefix) :]
        for key in observer.redis.scan_iter(match=observer.profile_pattern, count=1000)
    }
    missing = customers - keys
    text = f"Redis: {len(keys):,} live profiles for the {len(customers):,} customers seen"
    if missing:
        text += f" (missing {len(missing):,}, e.g. {sorted(missing)[:3]})"
    return not missing, text


def _oncall_check(observer: Observer, raised: set[str]) -> Check:
    received: Counter[str] = Counter()
    for delivery in observer.oncall.deliveries():
        data = delivery.get("data")
        received[str(data.get("alert_id") if isinstance(data, dict) else None)] += 1
    missing = raised - set(received)
    extra = set(received) - raised
    twice = sum(1 for n in received.values() if n > 1)
    ok = not missing and not extra and not twice
    return (
        ok,
        f"on-call received {len(received):,} of {len(raised):,} alerts and flags raised"
        + (f", missing {len(missing):,}" if missing else "")
        + (f", {len(extra):,} never raised" if extra else "")
        + (f", {twice:,} twice" if twice else ""),
    )
