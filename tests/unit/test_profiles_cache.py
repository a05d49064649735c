"""The engine's decoded-state cache changes nothing: same table bytes, same views as the
independent recomputation, across replays, duplicates, stitching and evictions."""

from __future__ import annotations

import random
from typing import Any

import orjson

from cxstream.faults.expected import expected_profiles
from cxstream.simulate.config import SimulationConfig
from cxstream.simulate.traffic import generate
from processors.profiles.engine import ProfileEngine, decode_state, encode_state
from processors.profiles.fold import PROFILE_EVENTS, has_profile
from processors.profiles.stitching import LINKS, MERGES
from processors.profiles.view import profile_view
from streams.batching import InputEvent, SeenEvents

START = 1_780_000_000_000


class _Table(dict[Any, Any]):
    def on_recover(self, callback: Any) -> None:
        self.recover = callback


class _Worker:
    """Engine + stores written back like the processor; internal topics as queues."""

    def __init__(self, cache_size: int) -> None:
        self.profiles: dict[bytes, bytes] = {}
        self.anonymous: dict[bytes, bytes] = {}
        seen = SeenEvents(_Table(), 3_600_000)
        self.engine = ProfileEngine(self.profiles, self.anonymous, seen, cache_size=cache_size)
        self.offsets: dict[str, int] = {}
        self.queues: dict[str, list[dict[str, Any]]] = {LINKS: [], MERGES: []}

    def batch(self, name: str, records: list[dict[str, Any]]) -> list[InputEvent]:
        items = []
        for record in records:
            offset = self.offsets[name] = self.offsets.get(name, -1) + 1
            items.append(InputEvent(name, record, 1, None, name, 0, offset, 0, None))
        return items

    def apply(self, name: str, items: list[InputEvent]) -> None:
        result = self.engine.apply(name, items)
        for cid, state in result.changed.items():
            self.profiles[cid.encode()] = encode_state(state)
        for aid, state in result.anonymous.items():
            self.anonymous[aid.encode()] = encode_state(state)
        for aid, (cid, at) in result.links.items():
            self.queues[LINKS].append({"anonymous_id": aid, "customer_id": cid, "at": at})
        for aid, (cid, version, activity) in result.merges.items():
            record = {"anonymous_id": aid, "customer_id": cid, "version": version}
            self.queues[MERGES].append({**record, "activity": activity})

    def deliver(self) -> None:
        while self.queues[LINKS] or self.queues[MERGES]:
            for name in (LINKS, MERGES):
                records, self.queues[name] = self.queues[name], []
                if records:
                    self.apply(name, self.batch(name, records))


def _stream(seed: int) -> list[tuple[str, dict[str, Any]]]:
    config = SimulationConfig(
        start_ms=START, duration_ms=None, max_events=6000, customers=300, seed=seed
    )
    return [(e.name, e.record) for e in generate(config) if e.name in PROFILE_EVENTS]


def _run(worker: _Worker, stream: list[tuple[str, dict[str, Any]]], seed: int) -> None:
    """Batches of one topic at a time (like lanes), some replayed, some events re-sent."""
    rng = random.Random(seed)
    done: list[tuple[str, list[InputEvent]]] = []
    i = 0
    while i < len(stream):
        name = stream[i][0]
        records = []
        while i < len(stream) and stream[i][0] == name and len(records) < rng.randint(1, 40):
            records.append(stream[i][1])
            i += 1
        if rng.random() < 0.1:
            records.append(rng.choice(records))  # a client re-send: same id, new offset
        items = worker.batch(name, records)
        worker.apply(name, items)
        done.append((name, items))
        if rng.random() < 0.15:
            worker.apply(*rng.choice(done))  # a replay after a "crash": same offsets
        if rng.random() < 0.3:
            worker.deliver()
    worker.deliver()


def test_cache_gives_the_same_table_bytes_as_no_cache() -> None:
    stream = _stream(11)
    plain, cached, tiny = _Worker(0), _Worker(100_000), _Worker(7)
    for worker in (plain, cached, tiny):
        _run(worker, stream, seed=5)
    assert len(plain.profiles) > 200
    assert cached.profiles == plain.profiles
    assert cached.anonymous == plain.anonymous
    assert tiny.profiles == plain.profiles  # evictions (limit 7) re-read the store
    assert cached.engine.cache.hits > cached.engine.cache.misses
    assert len(tiny.engine.cache.entries) <= 7


def test_cached_views_equal_the_independent_recomputation() -> None:
    stream = _stream(23)
    worker = _Worker(50)
    _run(worker, stream, seed=9)
    expected = expected_profiles(stream)
    actual = {}
    for key, raw in worker.profiles.items():
        state = decode_state(raw)
        if has_profile(state):
            # what Redis holds: each attribute JSON-encoded, read back
            view = profile_view(key.decode(), state)
            actual[key.decode()] = {k: orjson.loads(orjson.dumps(v)) for k, v in view.items()}
    assert actual.keys() == expected.keys()
    differ = [cid for cid in expected if actual[cid] != expected[cid]]
    assert not differ, (differ[:3], actual[differ[0]], expected[differ[0]])


def test_cleared_cache_reads_what_the_store_holds_now() -> None:
    """After a rebalance the store may hold another owner's newer state: clear_cache drops
    what was cached, and the next batch folds on top of the store's value."""
    stream = [(n, r) for n, r in _stream(3) if n == "transaction"][:4]
    assert len(stream) == 4
    cid = stream[0][1]["customer_id"]
    records = [dict(r, customer_id=cid) for _, r in stream]
    worker = _Worker(1000)
    worker.apply("transaction", worker.batch("transaction", records[:1]))
    other = _Worker(0)  # "another worker" folded two more events meanwhile
    other.offsets = dict(worker.offsets)
    other.profiles.update(worker.profiles)
    other.apply("transaction", other.batch("transaction", records[1:3]))
    worker.profiles.update(other.profiles)
    worker.offsets = dict(other.offsets)
    worker.engine.clear_cache()
    worker.apply("transaction", worker.batch("transaction", records[3:]))
    state = decode_state(worker.profiles[cid.encode()])
    assert state["v"] == 4
    assert sum(entry[0] for entry in state["t"].values()) == 4
