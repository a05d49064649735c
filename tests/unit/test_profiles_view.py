"""What a publication computes from a stored profile equals what the full view says.

The publisher builds the ``profile_snapshot`` event and the changed Redis attributes from the
state directly (:func:`publication`, :func:`snapshot_of`, :func:`view_attributes`); the view
(:func:`profile_view`) and :func:`snapshot_record` of it stay the reference, and the segment rule
applied to the view (:func:`segment`) checks the one computed from the state.
"""

from __future__ import annotations

from typing import Any

import pytest

from cxstream.simulate.config import SimulationConfig
from cxstream.simulate.traffic import generate
from processors.profiles.engine import decode_state
from processors.profiles.fold import FOLDS, TOUCHES
from processors.profiles.segment import segment
from processors.profiles.view import (
    ATTRIBUTES,
    profile_view,
    publication,
    snapshot_of,
    snapshot_record,
    touched_attributes,
    view_attributes,
)
from tests.unit.test_profiles_fold import START, Bus, _stitch_events


@pytest.fixture(scope="module")
def states() -> list[tuple[str, dict[str, Any]]]:
    bus = Bus()
    config = SimulationConfig(start_ms=START, duration_ms=None, max_events=20_000, customers=300)
    for event in generate(config):
        if event.name in FOLDS:
            bus.feed(event.name, [event.record])
    bus.deliver()
    for part in ("before", "login", "after", "own"):  # linked anonymous activity
        bus.feed("channel_interaction", _stitch_events()[part])
    bus.deliver()
    found = [(key.decode(), decode_state(raw)) for key, raw in bus.profiles.items()]
    assert any(state.get("a") for _, state in found)
    # a few hand-made corners: empty, every part, tied channels, a closed feedback item
    found.append(("C-EMPTY", {"v": 1}))
    found.append(
        (
            "C-ALL",
            {
                "v": 9,
                "c": {"web": [3, 10], "branch": [3, 12]},
                "ir": [1, 2],
                "ls": 12,
                "t": {"card|EUR": [2, 500, 11], "card|USD": [1, 70, 9], "loan|EUR": [1, 9, 3]},
                "p": {"P1": [1, 5], "P2": [0, 6]},
                "f": {"F1": [4, "opened", 4], "F2": [5, "resolved", 8], "F3": [None, "x", 2]},
                "s": {"nps": [40, 3], "csat": [90, 4]},
                "k": {"personalisation": [0, 1], "marketing": [1, 2]},
                "x": [2, 7, 3],
                "l": [4, 1, -1],
                "r": [5, 2, 1, 0],
                "h": [1, 8],
                "g": [1, "affluent", "medium", 2],
            },
        )
    )
    return found


def test_the_snapshot_from_the_state_is_the_snapshot_of_the_view(
    states: list[tuple[str, dict[str, Any]]],
) -> None:
    for cid, state in states:
        version = state.get("v", 0)
        expected = snapshot_record(profile_view(cid, state), version, 123)
        assert snapshot_of(cid, state, version, 123) == expected, cid


def test_a_few_attributes_are_those_of_the_whole_view(
    states: list[tuple[str, dict[str, Any]]],
) -> None:
    subsets = {touched_attributes(keys) for keys in TOUCHES.values()}
    subsets |= {frozenset({name}) for name in ATTRIBUTES}
    for cid, state in states:
        view = profile_view(cid, state)
        assert tuple(view) == ATTRIBUTES
        assert view["segment"] == segment(view), cid
        for names in subsets:
            assert view_attributes(cid, state, names) == {n: view[n] for n in names}, names


def test_a_publication_sends_what_the_view_and_its_snapshot_say(
    states: list[tuple[str, dict[str, Any]]],
) -> None:
    subsets: set[frozenset[str] | None] = {touched_attributes(k) for k in TOUCHES.values()}
    subsets |= {frozenset({name}) for name in ATTRIBUTES} | {frozenset(ATTRIBUTES), None}
    for cid, state in states:
        version = state.get("v", 0)
        view = profile_view(cid, state)
        snapshot = snapshot_record(view, version, 5)
        for names in subsets:
            sent, record = publication(cid, state, names, version, 5)
            assert record == snapshot, (cid, names)
            assert sent == (view if names is None else {n: view[n] for n in names}), names


def test_mirror_fields_travel_as_one_nul_separated_argument() -> None:
    from processors.profiles.mirror import _field_blob, _field_values

    view = {"channels": {"web": [2, 1]}, "note": "a\x00b", "segment": "new"}
    joined, count = _field_blob(view, ["channels", "note"], 7, 1_780_000_000_000)
    parts = joined.split(b"\0")
    assert count == 4 == len(parts) // 2
    assert dict(zip(parts[::2], parts[1::2], strict=True)) == {
        name.encode(): value
        for name, value in _field_values(view, ["channels", "note"], 7, 1_780_000_000_000).items()
    }
    assert b"\\u0000" in joined  # the NUL inside a value is escaped JSON, not a separator
