"""Request bodies of POST /v1/events: what is refused as a whole, and ISO-8601 timestamps."""

from __future__ import annotations

import pytest

from cxstream.api.ingest import BadRequestError, iso_to_epoch_ms, parse_events
from cxstream.errors import ValidationError


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"events": [', 400, "not valid JSON: Expecting value at line 1 column 13"),
        (b"\xff\xfe", 400, "not"),
        (b"[]", 400, "must be a JSON object"),
        (b'{"events": {}}', 400, "body.events must be an array, got an object"),
        (b'{"events": []}', 400, "body.events is empty"),
        (b'{"events": [{}], "extra": 1}', 400, "unknown top-level field 'extra'"),
        (b'{"events": [{}, {}, {}, {}]}', 413, "4 events in one request, limit 3"),
    ],
)
def test_unusable_bodies_are_refused_naming_the_problem(
    body: bytes, status: int, message: str
) -> None:
    with pytest.raises(BadRequestError) as caught:
        parse_events(body, max_events=3)
    assert caught.value.status == status
    assert message in caught.value.message


def test_a_usable_body_gives_its_items_unchecked() -> None:
    assert parse_events(b'{"events": [{"type": "x"}, 3]}', max_events=3) == [{"type": "x"}, 3]


def test_iso_timestamps_become_epoch_ms_utc_by_default() -> None:
    assert iso_to_epoch_ms("t", "occurred_at", "2026-12-01T08:30:00Z") == 1_796_113_800_000
    assert iso_to_epoch_ms("t", "occurred_at", "2026-12-01T08:30:00") == 1_796_113_800_000
    assert iso_to_epoch_ms("t", "occurred_at", "2026-12-01T16:30:00.250+08:00") == 1_796_113_800_250


def test_a_bad_timestamp_names_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        iso_to_epoch_ms("transaction", "occurred_at", "yesterday")
    assert caught.value.field == "occurred_at"
    assert "yesterday" in str(caught.value)
