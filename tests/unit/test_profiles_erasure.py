"""Profile-side erasure in the engine: the profile becomes a marker, nothing before the erasure
comes back (late events, replays, links, merges), later activity starts a fresh profile.

Runs on the in-memory bus of :mod:`tests.unit.test_profiles_fold` (engine, real dedupe index,
internal topics delivered by hand); the erase links are built the way the processor sends them.
"""

from __future__ import annotations

from typing import Any

from processors.profiles.engine import decode_state
from processors.profiles.fold import has_profile
from processors.profiles.stitching import LINKS
from processors.profiles.view import profile_view
from tests.unit.test_profiles_fold import Bus, _interaction


def _transaction(eid: str, at: int, cid: str, amount: int = 100) -> dict[str, Any]:
    return {
        "event_id": eid,
        "occurred_at": at,
        "customer_id": cid,
        "account_id": "acc",
        "transaction_id": f"tx-{eid}",
        "category": "groceries",
        "amount_minor": amount,
        "currency": "EUR",
        "channel": "app",
        "merchant": "shop",
        "source": "test",
    }


def _erasure(eid: str, at: int, cid: str) -> dict[str, Any]:
    return {
        "event_id": eid,
        "occurred_at": at,
        "customer_id": cid,
        "request_id": f"er-{eid}",
        "channel": "app",
        "reason": "customer_request",
        "source": "test",
    }


def _erase(bus: Bus, record: dict[str, Any]) -> None:
    """Apply an erasure and send its erase links, as the processor does."""
    result = bus.feed("erasure_requested", [record])
    for cid, (at, linked) in result.erased.items():
        for aid in linked:
            bus.links.append(
                (LINKS, {"anonymous_id": aid, "customer_id": cid, "at": at, "erase": True})
            )
    bus.deliver()


def _state(bus: Bus, cid: str) -> dict[str, Any]:
    return decode_state(bus.profiles.get(cid.encode()))


def test_erasure_leaves_a_marker_and_blocks_what_happened_before() -> None:
    bus = Bus()
    bus.feed("transaction", [_transaction("t1", 1_000, "C1"), _transaction("t2", 2_000, "C2")])
    bus.feed("channel_interaction", [_interaction("i1", 1_500, "C1", None)])
    version = _state(bus, "C1")["v"]
    _erase(bus, _erasure("e1", 5_000, "C1"))

    state = _state(bus, "C1")
    assert not has_profile(state)
    assert set(state) == {"o", "v", "erased"}
    assert state["erased"] == 5_000
    assert state["v"] > version  # a later profile never reuses a snapshot id
    # late events that occurred before the erasure (new offsets) are dropped
    late = bus.feed("transaction", [_transaction("t3", 4_999, "C1", 7)])
    assert late.blocked == 1
    assert not late.changed
    assert not has_profile(_state(bus, "C1"))
    # a replay of the erased customer's old batch changes nothing either
    replay = bus.apply(
        "transaction", [bus.event("transaction", _transaction("t1", 1_000, "C1"), 0)]
    )
    assert replay.replays == 1
    assert not replay.changed
    assert not has_profile(_state(bus, "C1"))
    # the other customer is untouched
    assert profile_view("C2", _state(bus, "C2"))["transactions"]["count"] == 1


def test_activity_after_the_erasure_starts_a_fresh_profile() -> None:
    bus = Bus()
    bus.feed("transaction", [_transaction("t1", 1_000, "C1", 100)])
    _erase(bus, _erasure("e1", 5_000, "C1"))
    bus.feed("transaction", [_transaction("t2", 6_000, "C1", 40)])
    view = profile_view("C1", _state(bus, "C1"))
    assert view["transactions"]["count"] == 1
    assert view["transactions"]["by_category"]["groceries"]["sum_minor"] == {"EUR": 40}
    assert view["erasure_requested_at"] == 5_000
    assert view["last_seen_at"] == 6_000


def test_erasure_reaches_linked_anonymous_activity() -> None:
    bus = Bus()
    # anonymous browsing on device D1, then a login links it to C1
    bus.feed("channel_interaction", [_interaction("a1", 1_000, None, "D1", channel="web")])
    bus.feed("channel_interaction", [_interaction("a2", 1_100, None, "D1", channel="web")])
    bus.feed("channel_interaction", [_interaction("l1", 2_000, "C1", "D1", channel="app")])
    bus.deliver()
    assert profile_view("C1", _state(bus, "C1"))["channels"]["web"]["count"] == 2

    _erase(bus, _erasure("e1", 5_000, "C1"))
    anon = decode_state(bus.anonymous.get(b"D1"))
    assert set(anon) == {"o", "erased"}  # no activity, no customer id
    # a late anonymous event from before the erasure stays out
    late = bus.feed("channel_interaction", [_interaction("a3", 1_200, None, "D1")])
    assert late.blocked == 1
    # a stale link (made before the erasure) replayed on the links topic is ignored
    bus.apply(LINKS, [bus.event(LINKS, {"anonymous_id": "D1", "customer_id": "C1", "at": 2_000})])
    bus.deliver()
    assert "cust" not in decode_state(bus.anonymous.get(b"D1"))
    assert not has_profile(_state(bus, "C1"))

    # the customer comes back on the same device: only what happened after is merged
    bus.feed("channel_interaction", [_interaction("a4", 6_000, None, "D1", channel="web")])
    bus.feed("channel_interaction", [_interaction("l2", 7_000, "C1", "D1", channel="app")])
    bus.deliver()
    view = profile_view("C1", _state(bus, "C1"))
    assert view["channels"] == {
        "app": {"count": 1, "last_at": 7_000},
        "web": {"count": 1, "last_at": 6_000},
    }
    assert view["linked_anonymous_ids"] == 1


def test_replayed_erasure_repeats_its_effects_without_new_data() -> None:
    bus = Bus()
    bus.feed("transaction", [_transaction("t1", 1_000, "C1")])
    record = _erasure("e1", 5_000, "C1")
    _erase(bus, record)
    marker = _state(bus, "C1")
    again = bus.apply("erasure_requested", [bus.event("erasure_requested", record, 0)])
    # republished (the processor deletes the hash again), not re-applied
    assert again.replays == 1
    assert set(again.replayed) == {"C1"}
    assert not again.erased
    assert _state(bus, "C1") == marker
