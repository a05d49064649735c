"""Profile folding: event time, arrival order, replays, duplicates and identity stitching.

The engine runs on plain in-memory stores (dicts of JSON bytes, what a Faust table holds) and
the real dedupe index (:class:`streams.batching.SeenEvents`) over a dict; the internal topics
are a list the test delivers in chosen orders.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import pytest

from cxstream.simulate.config import SimulationConfig
from cxstream.simulate.traffic import generate
from processors.profiles.engine import BatchResult, ProfileEngine, decode_state, encode_state
from processors.profiles.fold import FOLDS, customer_of
from processors.profiles.stitching import LINKS, MERGES
from processors.profiles.view import profile_view
from streams.batching import InputEvent, SeenEvents

START = 1_780_000_000_000


class Table(dict[Any, Any]):
    """A dict with the one table hook SeenEvents uses."""

    def on_recover(self, callback: Any) -> None:
        self.recover = callback


class Bus:
    """The engine plus its tables; applies batches and writes results like the processor."""

    def __init__(self) -> None:
        self.profiles: dict[bytes, bytes] = {}
        self.anonymous: dict[bytes, bytes] = {}
        self.engine = ProfileEngine(self.profiles, self.anonymous, SeenEvents(Table(), 3_600_000))
        self.offsets: dict[str, int] = {}
        self.links: list[tuple[str, dict[str, Any]]] = []
        self.merges: list[tuple[str, dict[str, Any]]] = []

    def event(self, name: str, record: dict[str, Any], offset: int | None = None) -> InputEvent:
        if offset is None:
            offset = self.offsets.get(name, -1) + 1
        self.offsets[name] = max(self.offsets.get(name, -1), offset)
        at = record.get("occurred_at", 0)
        return InputEvent(name, record, 1, None, name, 0, offset, at, None)

    def apply(self, name: str, items: list[InputEvent]) -> BatchResult:
        result = self.engine.apply(name, items)
        for cid, state in result.changed.items():
            self.profiles[cid.encode()] = encode_state(state)
        for aid, state in result.anonymous.items():
            self.anonymous[aid.encode()] = encode_state(state)
        for aid, (cid, at) in result.links.items():
            self.links.append((LINKS, {"anonymous_id": aid, "customer_id": cid, "at": at}))
        for aid, (cid, version, activity) in result.merges.items():
            self.merges.append(
                (
                    MERGES,
                    {
                        "anonymous_id": aid,
                        "customer_id": cid,
                        "version": version,
                        "activity": activity,
                    },
                )
            )
        return result

    def feed(self, name: str, records: Iterable[dict[str, Any]]) -> BatchResult:
        return self.apply(name, [self.event(name, r) for r in records])

    def deliver(self) -> None:
        """Deliver internal messages until none is left (links first, then merges)."""
        while self.links or self.merges:
            for name, queue in ((LINKS, self.links), (MERGES, self.merges)):
                batch, queue[:] = list(queue), []
                if batch:
                    self.apply(name, [self.event(name, record) for _, record in batch])

    def view(self, cid: str) -> dict[str, Any]:
        return profile_view(cid, decode_state(self.profiles.get(cid.encode())))


def _interaction(eid: str, at: int, cid: str | None, aid: str | None, channel: str = "web",
                 action: str = "page_view") -> dict[str, Any]:  # fmt: skip
    return {
        "event_id": eid,
        "occurred_at": at,
        "customer_id": cid,
        "anonymous_id": aid,
        "channel": channel,
        "action": action,
        "topic": "rates",
        "session_id": None,
        "duration_ms": None,
        "resolved": None,
        "search_query": "my secret search",
        "campaign_id": None,
        "locale": None,
        "source": "test",
    }


@pytest.fixture(scope="module")
def simulated() -> list[tuple[str, dict[str, Any]]]:
    config = SimulationConfig(start_ms=START, duration_ms=None, max_events=6000, customers=60)
    return [(e.name, e.record) for e in generate(config) if e.name in FOLDS]


def _per_customer(events: list[tuple[str, dict[str, Any]]]) -> dict[str, list[Any]]:
    by: dict[str, list[Any]] = {}
    for name, record in events:
        cid = customer_of(name, record)
        if cid is not None:
            by.setdefault(cid, []).append((name, record))
    return by


def _fold_in_order(events: list[tuple[str, dict[str, Any]]], batch: int) -> Bus:
    bus = Bus()
    for start in range(0, len(events), batch):
        for name, record in events[start : start + batch]:
            bus.feed(name, [record])
    return bus


def test_arrival_order_does_not_change_profiles(simulated: list[Any]) -> None:
    shuffled = list(simulated)
    random.Random(3).shuffle(shuffled)
    in_order, mixed = _fold_in_order(simulated, 50), _fold_in_order(shuffled, 7)
    customers = sorted(_per_customer(simulated))
    assert len(customers) >= 30
    for cid in customers:
        assert in_order.view(cid) == mixed.view(cid), cid


def test_latest_values_follow_event_time_not_arrival() -> None:
    bus = Bus()
    survey = {"survey_id": "s", "dimension": "overall", "channel": "web", "comment": "x",
              "source": "t", "customer_id": "C1"}  # fmt: skip
    bus.feed("survey_response", [{**survey, "event_id": "e2", "occurred_at": 2_000, "score": 90}])
    bus.feed("survey_response", [{**survey, "event_id": "e1", "occurred_at": 1_000, "score": 10}])
    consent = {"customer_id": "C1", "consent": "personalisation", "channel": "app", "source": "t"}
    bus.feed("consent_changed", [{**consent, "event_id": "k2", "occurred_at": 5_000,
                                  "granted": False}])  # fmt: skip
    bus.feed("consent_changed", [{**consent, "event_id": "k1", "occurred_at": 4_000,
                                  "granted": True}])  # fmt: skip
    bus.feed("channel_interaction", [_interaction("i1", 7_000, "C1", None, "branch",
                                                  "information_request")])  # fmt: skip
    bus.feed("channel_interaction", [_interaction("i0", 3_000, "C1", None, "app",
                                                  "service_request")])  # fmt: skip
    view = bus.view("C1")
    assert view["survey_scores"] == {"overall": 90}
    assert view["consents"] == {"personalisation": False}
    assert view["personalisation_opt_out"] is True
    assert view["last_seen_at"] == 7_000
    assert (view["info_requests_online"], view["info_requests_offline"]) == (1, 1)
    assert view["channels"]["branch"] == {"count": 1, "last_at": 7_000}


def test_feedback_status_before_submission_is_open_only_once_submitted() -> None:
    bus = Bus()
    base = {"customer_id": "C1", "feedback_id": "F1", "department": None, "agent_id": None,
            "note": None, "source": "t"}  # fmt: skip
    ack = {**base, "event_id": "a", "occurred_at": 5_000, "status": "acknowledged"}
    bus.feed("feedback_status_changed", [ack])
    assert bus.view("C1")["open_feedback"] == 0
    submitted = {"event_id": "s", "occurred_at": 4_000, "customer_id": "C1", "feedback_id": "F1",
                 "channel": "app", "category": "fees", "severity": "low",
                 "department": "customer_service", "text": "t", "contact_email": None,
                 "contact_phone": None, "source": "t"}  # fmt: skip
    bus.feed("feedback_submitted", [submitted])
    assert (bus.view("C1")["open_feedback"], bus.view("C1")["oldest_open_feedback_at"]) == (
        1,
        4_000,
    )
    bus.feed("feedback_status_changed",
             [{**base, "event_id": "r", "occurred_at": 9_000, "status": "resolved"}])  # fmt: skip
    assert bus.view("C1")["open_feedback"] == 0


def test_replay_and_duplicates_change_nothing(simulated: list[Any]) -> None:
    bus = Bus()
    by_name: dict[str, list[dict[str, Any]]] = {}
    for name, record in simulated:
        by_name.setdefault(name, []).append(record)
    batches = {name: [bus.event(name, r) for r in records] for name, records in by_name.items()}
    for name, items in batches.items():
        bus.apply(name, items)
    before = dict(bus.profiles)
    replays = duplicates = 0
    for name, items in batches.items():
        # a crash before the commit: the same messages again (same offsets)
        replays += bus.apply(name, items[: len(items) // 2]).replays
        # client retries: the same events under new offsets
        retried = [bus.event(name, item.record) for item in items[::3]]
        result = bus.apply(name, retried)
        duplicates += result.duplicates
        assert result.applied == 0
    assert replays > 0
    assert duplicates > 0
    for key, raw in before.items():
        old, new = decode_state(raw), decode_state(bus.profiles[key])
        old.pop("o"), new.pop("o")
        assert old == new, key


def test_no_pii_in_profiles(simulated: list[Any]) -> None:
    bus = _fold_in_order(simulated, 100)
    pii = set()
    for name, record in simulated:
        if name == "customer_registered":
            pii |= {record["full_name"], record["email"], record["phone"], record["national_id"]}
        if name == "transaction":
            pii.add(record["account_id"])
    pii.discard(None)
    stored = b"".join(bus.profiles.values()).decode()
    assert pii
    assert not [value for value in pii if value in stored]


def _stitch_events() -> dict[str, list[dict[str, Any]]]:
    anon_before = [_interaction(f"b{i}", 1_000 + i, None, "cookie-1") for i in range(3)]
    login = [_interaction("l1", 2_000, "C7", "cookie-1", "web", "information_request")]
    own = [_interaction("o1", 2_500, "C7", None, "app")]
    anon_after = [_interaction(f"a{i}", 3_000 + i, None, "cookie-1", "app") for i in range(2)]
    return {"before": anon_before, "login": login, "own": own, "after": anon_after}


@pytest.mark.parametrize(
    "order",
    [
        ("before", "login", "own", "after"),
        ("login", "after", "own", "before"),
        ("after", "own", "login", "before"),
    ],
)
@pytest.mark.parametrize("deliver_late", [False, True])
def test_stitching_folds_anonymous_activity_in_any_order(
    order: tuple[str, ...], deliver_late: bool
) -> None:
    parts = _stitch_events()
    bus = Bus()
    for part in order:
        bus.feed("channel_interaction", parts[part])
        if not deliver_late:
            bus.deliver()
    bus.deliver()
    view = bus.view("C7")
    assert view["channels"] == {
        "web": {"count": 4, "last_at": 2_000},
        "app": {"count": 3, "last_at": 3_001},
    }
    assert view["last_seen_at"] == 3_001
    assert view["info_requests_online"] == 1
    assert view["linked_anonymous_ids"] == 1
    # the anonymous id's own events are not counted twice: re-delivering every merge again
    again = Bus()
    again.profiles, again.anonymous = bus.profiles, bus.anonymous
    state = decode_state(bus.anonymous[b"cookie-1"])
    for version in range(1, state["n"] + 1):
        merge = {"anonymous_id": "cookie-1", "customer_id": "C7", "version": version,
                 "activity": {"c": {"web": [1, 1]}}}  # fmt: skip
        bus.apply(MERGES, [bus.event(MERGES, merge)])
    assert bus.view("C7") == view


def test_an_anonymous_id_stays_with_its_first_customer() -> None:
    bus = Bus()
    bus.feed("channel_interaction", [_interaction("x", 1, None, "shared")])
    bus.feed("channel_interaction", [_interaction("y", 2, "C1", "shared")])
    bus.deliver()
    bus.feed("channel_interaction", [_interaction("z", 3, "C2", "shared")])
    bus.deliver()
    assert bus.view("C1")["channels"]["web"]["count"] == 2
    assert bus.view("C2")["channels"]["web"]["count"] == 1
