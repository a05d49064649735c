"""Live profiles end to end: simulated events -> Kafka -> ``cxstream worker -p profiles`` -> Redis.

One test in phases (one stack, one topic prefix): after each phase every customer's Redis hash
must equal the profile recomputed independently and simply (``cxstream.faults.expected``, which
the fault suite uses too) from the events published so far (client retries included, which
must not count):

1. one worker;
2. the worker is SIGKILLed while events arrive, then restarted (its table recovers from the
   changelog; replays after the kill must not double-count);
3. a second worker joins the group (partitions move), more events;
4. the first worker stops; its partitions move to the second, more events; the second's web
   view answers for any customer (routing) and 404 for an unknown one.

A second test erases a customer (with a linked device) and proves nothing of them comes back:
not through late events, replays after a SIGKILL, or the device; later activity starts afresh.
A third drives the Redis mirror's write script directly (partial writes need the base version).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from cxstream.faults.expected import SEVERITY, expected_profiles
from cxstream.settings import Settings
from cxstream.simulate.config import SimulationConfig
from cxstream.simulate.records import erasure_requested
from cxstream.simulate.traffic import generate
from processors.profiles.mirror import profile_key, read_profile
from streams.codec import build_codec
from streams.kafka_config import confluent_config
from streams.producer import EventProducer
from tests.integration.test_kafka_roundtrip import (
    CXSTREAM,
    settings_fixture,  # noqa: F401 (the `settings` fixture, shared)
    worker_env,
)
from tests.support.services import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
START = 1_780_000_000_000
# -- the stream ------------------------------------------------------------------------------


def _events() -> list[tuple[str, dict[str, Any]]]:
    config = SimulationConfig(start_ms=START, duration_ms=None, max_events=12_000, customers=150)
    events = [(e.name, e.record) for e in generate(config)]
    # security flags on some customers (the detector's output; here made by hand)
    for i, (name, record) in enumerate(events[:4000:97]):
        if name == "customer_registered":
            flag = {
                "event_id": f"00000000-0000-4000-8000-{i:012d}",
                "occurred_at": record["occurred_at"] + 1000,
                "flag_id": f"flag-{i}",
                "principal_id": record["customer_id"],
                "principal_type": "customer",
                "customer_id": record["customer_id"],
                "severity": SEVERITY[i % 4],
                "rule": "test",
                "score": None,
                "explanation": "test flag",
                "evidence_event_ids": [],
            }
            events.append(("security_flag", flag))
    return events


def _publish(producer: EventProducer, events: list[tuple[str, dict[str, Any]]]) -> None:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for name, record in events:
        by_name.setdefault(name, []).append(record)
    for name, records in by_name.items():
        producer.produce_many(name, records)
    producer.flush(30)


def _redis_profiles(settings: Settings, customers: list[str]) -> dict[str, dict[str, Any] | None]:
    async def read() -> dict[str, dict[str, Any] | None]:
        client = Redis.from_url(settings.redis.url)
        try:
            found = {}
            for cid in customers:
                profile = await read_profile(client, settings, cid)
                if profile is not None:
                    for extra in ("version", "updated_at", "oldest_open_feedback_age_seconds"):
                        profile.pop(extra)
                found[cid] = profile
            return found
        finally:
            await client.aclose()

    return asyncio.run(read())


def _wait_equal(
    settings: Settings, events: list[tuple[str, dict[str, Any]]], logs: list[Path], what: str
) -> None:
    expected = expected_profiles(events)
    deadline = time.monotonic() + 90
    diff: list[str] = []
    while time.monotonic() < deadline:
        actual = _redis_profiles(settings, sorted(expected))
        diff = [cid for cid in expected if actual[cid] != expected[cid]]
        if not diff:
            return
        time.sleep(1.0)
    cid = diff[0]
    tails = "\n".join(log.read_text(errors="replace")[-1500:] for log in logs if log.exists())
    raise AssertionError(
        f"{what}: {len(diff)} of {len(expected)} profiles differ, e.g. {cid}:\n"
        f"redis:    {_redis_profiles(settings, [cid])[cid]}\nexpected: {expected[cid]}\n{tails}"
    )


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[dict[str, Any]]:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    ports = {"a": settings.worker.web_port, "b": free_port()}

    def start(name: str, **extra: str) -> subprocess.Popen[bytes]:
        env = worker_env(settings, PYTHONPATH=str(REPO), **extra)
        env["CX_WORKER__WEB_PORT"] = str(ports[name])
        env["CX_WORKER__DATA_DIR"] = str(tmp_path / f"worker-{name}")
        env["CX_REDIS__URL"] = settings.redis.url
        with (tmp_path / f"worker-{name}.log").open("ab") as out:
            procs[name] = subprocess.Popen(
                [CXSTREAM, "worker", "-p", "profiles", "--no-ensure-topics"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return procs[name]

    try:
        yield {"start": start, "procs": procs, "ports": ports, "logs": tmp_path}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _get(port: int, cid: str) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/v1/profiles/{cid}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_profiles_equal_recomputation_through_kill_and_rebalance(
    settings: Settings, workers: dict[str, Any]
) -> None:
    events = _events()
    quarter = len(events) // 4
    parts = [events[i * quarter : (i + 1) * quarter] for i in range(3)] + [events[3 * quarter :]]
    # client retries: some events sent again under new offsets
    parts[1] = parts[1] + parts[0][::40]
    logs = [workers["logs"] / "worker-a.log", workers["logs"] / "worker-b.log"]
    published: list[tuple[str, dict[str, Any]]] = []
    with EventProducer(settings, build_codec(settings)) as producer:
        a = workers["start"]("a")
        _publish(producer, parts[0])
        published += parts[0]
        _wait_equal(settings, published, logs, "phase 1 (one worker)")

        half = len(parts[1]) // 2
        _publish(producer, parts[1][:half])
        time.sleep(1.0)  # let it take some of them, then kill it mid-stream
        a.send_signal(signal.SIGKILL)
        a.wait()
        _publish(producer, parts[1][half:])
        published += parts[1]
        a = workers["start"]("a")
        _wait_equal(settings, published, logs, "phase 2 (after SIGKILL and restart)")

        workers["start"]("b")
        _publish(producer, parts[2])
        published += parts[2]
        _wait_equal(settings, published, logs, "phase 3 (two workers)")

        a.send_signal(signal.SIGTERM)
        assert a.wait(timeout=30) == 0
        _publish(producer, parts[3])
        published += parts[3]
        _wait_equal(settings, published, logs, "phase 4 (the second worker alone)")

    expected = expected_profiles(published)
    port_b = workers["ports"]["b"]
    for cid in sorted(expected)[:5]:
        status, body = _get(port_b, cid)
        assert status == 200, body
        assert body["channels"] == expected[cid]["channels"]
        assert body["segment"] == expected[cid]["segment"]
    status, body = _get(port_b, "no-such-customer")
    assert status == 404
    assert body["error"] == "not_found"


# -- erasure ---------------------------------------------------------------------------------


def _templates() -> dict[str, dict[str, Any]]:
    """One valid record per event type (from the simulator), to vary below."""
    config = SimulationConfig(start_ms=START, duration_ms=None, max_events=3000, customers=20)
    found: dict[str, dict[str, Any]] = {}
    for event in generate(config):
        found.setdefault(event.name, dict(event.record))
    return found


def _snapshot_tombstones(settings: Settings, customer_id: str) -> int:
    """Null values for ``customer_id`` on the profile_snapshot topic (read from the start)."""
    consumer = Consumer(
        confluent_config(settings, **{"group.id": "t", "enable.auto.commit": False})
    )
    topic = settings.topic("profile_snapshot")
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p, 0) for p in meta.partitions]
        ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in parts}
        consumer.assign(parts)
        found, left = 0, {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + 30
        while left and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=1.0):
                if message.error() is not None:
                    continue
                if message.key() == customer_id.encode() and message.value() is None:
                    found += 1
                if message.offset() + 1 >= ends[message.partition()]:
                    left.discard(message.partition())
        return found
    finally:
        consumer.close()


def test_erased_customer_stays_erased(settings: Settings, workers: dict[str, Any]) -> None:
    t = _templates()
    base = START + 10_000_000
    gone, kept, device = "C-ERASE-1", "C-KEEP-1", "D-ERASE-1"
    n = iter(range(10_000))

    def interaction(at: int, cid: str | None, aid: str | None, channel: str) -> tuple[str, dict]:
        record = {**t["channel_interaction"], "event_id": f"00000000-0000-4000-9000-{next(n):012d}"}
        record.update(occurred_at=at, customer_id=cid, anonymous_id=aid, channel=channel)
        return "channel_interaction", record

    def transaction(at: int, cid: str, amount: int) -> tuple[str, dict]:
        record = {**t["transaction"], "event_id": f"00000000-0000-4000-9100-{next(n):012d}"}
        record.update(occurred_at=at, customer_id=cid, amount_minor=amount)
        return "transaction", record

    before = [
        interaction(base, None, device, "web"),
        interaction(base + 10, None, device, "web"),
        interaction(base + 20, gone, device, "app"),
        transaction(base + 30, gone, 500),
        transaction(base + 40, kept, 700),
        interaction(base + 50, kept, None, "branch"),
    ]
    erased_at = base + 1000
    erasure = erasure_requested(
        "00000000-0000-4000-9200-000000000001", erased_at, gone, "er-1", "app", None, "test"
    )
    # late events that occurred before the erasure, and the same device before it
    late = [
        transaction(erased_at - 1, gone, 900),
        interaction(base + 60, None, device, "social"),
        interaction(base + 70, gone, None, "branch"),
    ]
    # the customer comes back later on the same device
    after = [interaction(erased_at + 100, None, device, "web")]
    after_login = [interaction(erased_at + 200, gone, device, "app")]
    logs = [workers["logs"] / "worker-a.log"]
    tombstones = {"CX_PROFILES__SNAPSHOT_TOMBSTONES": "true"}
    redis = SyncRedis.from_url(settings.redis.url)
    with EventProducer(settings, build_codec(settings)) as producer:
        a = workers["start"]("a", **tombstones)
        _publish(producer, before)
        _wait_equal(settings, before, logs, "before the erasure")

        _publish(producer, [("erasure_requested", erasure)])
        deadline = time.monotonic() + 90
        while redis.exists(profile_key(settings, gone)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not redis.exists(profile_key(settings, gone)), "erased profile still in Redis"
        _publish(producer, late)
        time.sleep(1.0)  # let it take them, then kill it: what was not committed is replayed
        a.send_signal(signal.SIGKILL)
        a.wait()
        a = workers["start"]("a", **tombstones)
        # once the kept customer is current again, the restarted worker has caught up
        marker = transaction(base + 80, kept, 1)
        _publish(producer, [marker])
        kept_events = [e for e in (*before, marker) if e[1].get("customer_id") == kept]
        _wait_equal(settings, kept_events, logs, "the kept customer after the restart")
        assert not redis.exists(profile_key(settings, gone)), "late events brought it back"
        status, body = _get(workers["ports"]["a"], gone)
        assert status == 404, body

        _publish(producer, after)
        _publish(producer, after_login)
        fresh = [("erasure_requested", erasure), *after, *after_login]
        expected = expected_profiles(fresh)[gone]
        deadline = time.monotonic() + 90
        actual = None
        while time.monotonic() < deadline:
            actual = _redis_profiles(settings, [gone])[gone]
            if actual == expected:
                break
            time.sleep(0.3)
        tails = "".join(log.read_text(errors="replace")[-1500:] for log in logs)
        assert actual == expected, f"after the erasure:\n{actual}\n{expected}\n{tails}"
    # the snapshot topic (compacted) got a null value for the erased key
    assert _snapshot_tombstones(settings, gone) >= 1


# -- the Redis mirror's write script -----------------------------------------------------------


def test_mirror_fields_keep_every_character_of_their_json(settings: Settings) -> None:
    """The script splits a customer's fields at NUL bytes: values holding NUL, unicode and
    the separator-looking text still arrive whole (orjson escapes a NUL inside JSON)."""
    from processors.profiles.mirror import RedisMirror, decode_fields, redis_for

    view = {
        "note": "a\x00b \\0 ü€ 😀",
        "empty": "",
        "nested": {"k\x00": ["x", 1.5, None, True]},
        "products": [],
    }
    sync = SyncRedis.from_url(settings.redis.url)
    key = profile_key(settings, "C-NUL-1")

    async def scenario() -> None:
        mirror = RedisMirror(settings, redis_for(settings), lambda cid: None)
        try:
            assert await mirror.publish([("C-NUL-1", view, 3, None, 0)])
        finally:
            await mirror.close()

    try:
        asyncio.run(scenario())
        found = decode_fields(sync.hgetall(key))
        assert found is not None
        found.pop("updated_at")
        assert found == {**view, "version": 3}
    finally:
        sync.delete(key)
        sync.close()


def test_mirror_writes_partially_only_on_top_of_the_base_version(settings: Settings) -> None:
    from processors.profiles.fold import fold_event
    from processors.profiles.mirror import RedisMirror, decode_fields, redis_for
    from processors.profiles.view import profile_view

    t = _templates()
    tx = {**t["transaction"], "customer_id": "C-M-1", "occurred_at": START, "amount_minor": 10}
    ci = {**t["channel_interaction"], "customer_id": "C-M-1", "occurred_at": START + 5}
    ci["anonymous_id"] = None
    state: dict[str, Any] = {}
    fold_event(state, "transaction", tx)
    v1 = profile_view("C-M-1", state)
    fold_event(state, "channel_interaction", ci)
    v2 = profile_view("C-M-1", state)
    sync = SyncRedis.from_url(settings.redis.url)
    key = profile_key(settings, "C-M-1")

    def stored() -> dict[str, Any] | None:
        found = decode_fields(sync.hgetall(key))
        if found is not None:
            found.pop("updated_at")
        return found

    # the profiles table as the mirror's loader sees it: what a partial write that finds
    # another version in Redis is written in full from
    table: dict[str, tuple[dict[str, Any], int]] = {}

    async def scenario() -> None:
        mirror = RedisMirror(settings, redis_for(settings), table.get)
        channels = frozenset({"channels", "preferred_channel", "last_seen_at", "segment"})
        # a partial write's entry carries only the attributes it names
        v2_changed = {name: v2[name] for name in channels}
        try:
            # no hash yet: a partial write becomes a full one, from the table
            table["C-M-1"] = (v1, 1)
            await mirror.publish([("C-M-1", {n: v1[n] for n in channels}, 1, channels, 1)])
            assert stored() == {**v1, "version": 1}
            assert mirror.full_writes == 1
            # on top of its base: only the named fields are sent, the result is the new view
            table["C-M-1"] = (v2, 2)
            await mirror.publish([("C-M-1", v2_changed, 2, channels, 1)])
            assert stored() == {**v2, "version": 2}
            assert mirror.full_writes == 1
            # an older publication arriving late (a former owner) changes nothing
            await mirror.publish([("C-M-1", v1, 1, None, 0)])
            assert stored() == {**v2, "version": 2}
            # Redis holds another base than the change started from: written in full
            sync.hset(key, "transactions", "{}")
            sync.hset(key, "version", "7")
            full = mirror.full_writes
            table["C-M-1"] = (v2, 9)
            await mirror.publish([("C-M-1", v2_changed, 9, channels, 8)])
            assert stored() == {**v2, "version": 9}
            assert mirror.full_writes == full + 1
            # ... and when the table no longer has the customer (erased meanwhile): deleted
            sync.hset(key, "version", "8")
            del table["C-M-1"]
            await mirror.publish([("C-M-1", v2_changed, 10, channels, 9)])
            assert not sync.exists(key)
            # background writes run in submission order: a partial write submitted right
            # after the full write it builds on finds that write done (and an erasure
            # submitted behind both leaves nothing)
            sync.delete(key)
            first = mirror.submit([("C-M-1", v1, 11, None, 0)])
            second = mirror.submit([("C-M-1", v2_changed, 12, channels, 11)])
            full = mirror.full_writes
            await mirror.drain()
            assert first.result()
            assert second.result()
            assert stored() == {**v2, "version": 12}
            assert mirror.full_writes == full + 1  # the first only: the partial one found its base
            mirror.submit([("C-M-1", v2, 13, None, 0)])
            # erasure
            await mirror.delete(["C-M-1"])
            assert not sync.exists(key)
            # the script is loaded again when Redis forgot it
            sync.script_flush()
            await mirror.publish([("C-M-1", v2, 10, None, 0)])
            assert stored() == {**v2, "version": 10}
        finally:
            sync.delete(key)
            await mirror.close()

    asyncio.run(scenario())


def test_mirror_writes_many_chunks_at_once_and_reloads_a_forgotten_script(
    settings: Settings,
) -> None:
    """A write larger than one script call's chunk sends every chunk before reading replies;
    partial writes that find another base in any chunk are written in full from the table,
    and when Redis forgot the script every chunk is sent again once it is loaded."""
    from processors.profiles.fold import fold_event
    from processors.profiles.mirror import CHUNK, RedisMirror, decode_fields, redis_for
    from processors.profiles.view import profile_view

    t = _templates()
    count = 2 * CHUNK + 37
    ids = [f"C-CH-{i:05d}" for i in range(count)]
    views = {}
    for i, cid in enumerate(ids):
        state: dict[str, Any] = {}
        tx = {**t["transaction"], "customer_id": cid, "occurred_at": START + i}
        fold_event(state, "transaction", tx)
        views[cid] = profile_view(cid, state)
    sync = SyncRedis.from_url(settings.redis.url)
    keys = [profile_key(settings, cid) for cid in ids]
    table = {cid: (views[cid], 2) for cid in ids}
    names = frozenset({"transactions", "last_seen_at"})

    def stored(cid: str) -> dict[str, Any] | None:
        found = decode_fields(sync.hgetall(profile_key(settings, cid)))
        if found is not None:
            found.pop("updated_at")
        return found

    async def scenario() -> None:
        mirror = RedisMirror(settings, redis_for(settings), table.get)
        try:
            sync.script_flush()  # the first call of every chunk finds no script
            assert await mirror.publish([(cid, views[cid], 1, None, 0) for cid in ids])
            assert all(stored(cid) == {**views[cid], "version": 1} for cid in ids)
            # every 50th hash holds another (older) state than the base: those partial writes
            # come back for a full one
            stale = ids[::50]
            for cid in stale:
                sync.hset(profile_key(settings, cid), "version", "0")
            full = mirror.full_writes
            partial = [(cid, {n: views[cid][n] for n in names}, 2, names, 1) for cid in ids]
            assert await mirror.publish(partial)
            assert mirror.full_writes == full + len(stale)
            assert all(stored(cid) == {**views[cid], "version": 2} for cid in ids)
            assert mirror.written == 2 * count + len(stale)
        finally:
            await mirror.close()

    try:
        asyncio.run(scenario())
    finally:
        sync.delete(*keys)
        sync.close()
