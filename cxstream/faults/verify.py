"""After the faults: wait until everything settles, then check the results exactly.

Checks, each against what reached Kafka (the ground truth of what was produced):

- the demo's final checks (:func:`cxstream.demo.checks.final_checks`): per event type the set of
  event ids on the topic equals the set in ClickHouse, each once under ``FINAL``; the worker
  counted every interaction once; dead letters only for the poison pills (worker + sink); every
  customer has a profile; on-call received every alert and security flag on the topics once
  (after the receiver's webhook-id dedupe) and nothing that was not raised;
- every profile in Redis equals the independent recomputation (:mod:`cxstream.faults.expected`)
  from the events on the topics, and Redis has no profile the recomputation does not;
- no alert or flag was raised twice under different event ids (a replay re-raising it with a new
  identity would be counted twice in ClickHouse and paged twice);
- the pipeline caught up by itself (every group's lag 0 within the settle timeout), no child
  exited on its own (crashes are restarted by the supervisor but fail the verdict), and resident
  memory stayed under the limit.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

from cxstream.demo.checks import Check, final_checks, read_topic
from cxstream.demo.observe import Observer, Snapshot, consumer_groups
from cxstream.faults.expected import BOOKKEEPING, PROFILE_INPUTS, expected_profiles
from cxstream.faults.scenario import Scenario


def observer_for(scenario: Scenario) -> Observer:
    groups = consumer_groups(scenario.settings, scenario.ns)
    return Observer(scenario.settings, groups, scenario.oncall, None)


def settle(
    scenario: Scenario, observer: Observer, timeout: float, quiet: float = 5.0
) -> tuple[float | None, Snapshot]:
    """Seconds from the end of traffic until every group is caught up and nothing moved for
    ``quiet`` seconds (``None``: not within ``timeout``), and the last snapshot."""
    while not scenario.traffic_done():
        scenario.supervise()
        time.sleep(0.5)
    began = time.monotonic()
    snap = observer.snapshot()
    marks: tuple[Any, ...] = ()
    quiet_since: float | None = None
    while time.monotonic() - began < timeout:
        time.sleep(1.0)
        scenario.supervise()
        snap = observer.snapshot()
        now = (tuple(sorted(snap.produced.items())), snap.alerts_received, snap.dead_letters)
        caught_up = all(lag == 0 for lag in snap.lag.values()) and not snap.errors
        if caught_up and now == marks:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= quiet:
                return quiet_since - began, snap
        else:
            quiet_since = None
        marks = now
    return None, snap


def verify(
    scenario: Scenario,
    observer: Observer,
    settled: float | None,
    last: Snapshot,
    timeout: float,
    memory_limit_mib: float,
) -> list[Check]:
    checks: list[Check] = [
        (
            settled is not None,
            f"caught up by itself {settled:.0f} s after the traffic ended"
            if settled is not None
            else f"NOT caught up {timeout:.0f} s after the traffic ended: lag {last.lag}, "
            f"errors {last.errors}",
        )
    ]
    snap = observer.snapshot(full=True)
    checks += final_checks(observer, snap, scenario.config.poison, exact_dead_letters=False)
    checks.append(dead_letter_check(observer, scenario.config.poison))
    checks.append(profiles_check(observer))
    checks += identity_checks(observer)
    checks.append(crash_check(scenario))
    checks.append(memory_check(scenario, memory_limit_mib))
    return checks


def redis_profiles(observer: Observer) -> dict[str, dict[str, Any]]:
    from processors.profiles.mirror import decode_fields

    prefix = observer.profile_pattern[:-1]
    out: dict[str, dict[str, Any]] = {}
    keys = list(observer.redis.scan_iter(match=observer.profile_pattern, count=1000))
    pipe = observer.redis.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    for key, raw in zip(keys, pipe.execute(), strict=True):
        profile = decode_fields(raw)
        if profile is None:
            continue
        for name in BOOKKEEPING:
            profile.pop(name, None)
        out[key.decode()[len(prefix) :]] = profile
    return out


def profiles_check(observer: Observer) -> Check:
    events: list[tuple[str, dict[str, Any]]] = []
    for name in PROFILE_INPUTS:
        records, _ = read_topic(observer, observer.settings.topic(name), None)
        events += [(name, record) for record in records]
    expected = expected_profiles(events)
    actual = redis_profiles(observer)
    differ = sorted(cid for cid in expected if actual.get(cid) != expected[cid])
    extra = sorted(set(actual) - set(expected))
    text = f"Redis profiles equal the recomputation: {len(expected) - len(differ):,} of "
    text += f"{len(expected):,}"
    if differ:
        cid = differ[0]
        got, want = actual.get(cid) or {}, expected[cid]
        fields = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        text += f"; {len(differ):,} differ, e.g. {cid} in {fields}: "
        text += "; ".join(f"{k}: redis {got.get(k)!r} != {want.get(k)!r}" for k in fields[:3])
    if extra:
        text += f"; {len(extra):,} profiles nobody produced events for, e.g. {extra[:3]}"
    return not differ and not extra, text


def identity_checks(observer: Observer) -> list[Check]:
    """Each alert/flag id on its topic carries one event id (re-sends keep their identity)."""
    checks: list[Check] = []
    for event, key in (("alert", "alert_id"), ("security_flag", "flag_id")):
        records, _ = read_topic(observer, observer.settings.topic(event), ["event_id", key])
        ids: dict[str, set[str]] = defaultdict(set)
        for record in records:
            ids[str(record[key])].add(str(record["event_id"]))
        twice = sorted(k for k, v in ids.items() if len(v) > 1)
        text = f"{event}: {len(ids):,} {key}s, each under one event id"
        if twice:
            text = f"{event}: {len(twice):,} of {len(ids):,} {key}s raised under several "
            text += f"event ids, e.g. {twice[0]}: {sorted(ids[twice[0]])}"
        checks.append((not twice, text))
    return checks


def dead_letter_check(observer: Observer, poison: int) -> Check:
    """Dead letters only for the poison pills: every one keyed ``poison`` (the DLQ keeps the
    original key), exactly ``poison`` distinct sources, each dead-lettered by worker and sink.

    A replay after a crash may dead-letter a pill again (at-least-once, same source headers);
    that is reported, not failed: a DLQ consumer dedupes on the source coordinates.
    """
    from confluent_kafka import Consumer, TopicPartition

    from streams.kafka_config import confluent_config

    topic = observer.settings.topic("dlq")
    marks = observer.high_watermarks(topic)
    consumer = Consumer(
        confluent_config(
            observer.settings, **{"group.id": "cxstream-faults-dlq", "enable.auto.commit": False}
        )
    )
    sources: Counter[tuple[str, ...]] = Counter()
    other: list[bytes | None] = []
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p, high in marks.items() if high > 0])
        left = sum(marks.values())
        while left > 0:
            batch = consumer.consume(num_messages=1000, timeout=2.0)
            if not batch:
                break
            for message in batch:
                if message.error() is not None:
                    continue
                left -= 1
                headers: dict[str, str] = {}
                found = message.headers() or []
                pairs = found.items() if isinstance(found, dict) else found
                for name, value in pairs:
                    headers[name] = value.decode() if isinstance(value, bytes) else str(value)
                source = tuple(
                    headers.get(f"cx.dlq.source.{part}", "?")
                    for part in ("topic", "partition", "offset")
                )
                if message.key() == b"poison":
                    sources[source] += 1
                else:
                    other.append(message.key())
    finally:
        consumer.close()
    total = sum(sources.values()) + len(other)
    ok = not other and len(sources) == poison and all(n >= 2 for n in sources.values())
    text = f"dead letters: {total} for {len(sources)} distinct poison sources of {poison} pills"
    if total > 2 * poison:
        text += f" ({total - 2 * poison} re-sent by replays after crashes)"
    if other:
        text += f"; {len(other)} dead letters of valid events, keys e.g. {other[:3]}"
    return ok, text


def crash_check(scenario: Scenario) -> Check:
    if not scenario.unplanned:
        return True, "no child exited on its own"
    first = scenario.unplanned[0]
    roles = ", ".join(f"{e.role} (exit {e.returncode})" for e in scenario.unplanned)
    return False, f"children exited on their own (restarted): {roles}; first log:\n{first.log_tail}"


def memory_check(scenario: Scenario, limit_mib: float) -> Check:
    memory = scenario.memory
    over = {role: peak for role, peak in memory.peak.items() if peak > limit_mib}
    text = "resident memory (MiB, first/peak/last): " + ", ".join(
        f"{role} {memory.first[role]:.0f}/{peak:.0f}/{memory.last[role]:.0f}"
        for role, peak in sorted(memory.peak.items())
    )
    if over:
        text += f"; over the {limit_mib:.0f} MiB limit: {sorted(over)}"
    return not over and bool(memory.peak), text
