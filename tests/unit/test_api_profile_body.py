"""The profile body built from the Redis hash equals what the mirror's own reader decodes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cxstream.api.profile_body import AGE, profile_body
from processors.profiles.mirror import decode_fields, encode_fields
from processors.profiles.view import profile_view, with_ages

NOW = 1_796_000_500_123


def _hash(view: dict[str, Any], version: int = 3) -> dict[bytes, bytes]:
    """The hash as HGETALL answers it (bytes, in field order) for a view the mirror wrote."""
    return {k.encode(): v.encode() for k, v in encode_fields(view, version, NOW - 5).items()}


def _stored(open_at: int | None) -> dict[str, Any]:
    stored: dict[str, Any] = {
        "c": {"app": [3, 1_796_000_000_000], "web": [1, 1_795_000_000_000]},
        "ir": [4, 1],
        "ls": 1_796_000_000_000,
        "k": {"personalisation": [0, 1_790_000_000_000]},
        "t": {"card|EUR": [2, 12_345, 1_796_000_000_000]},
    }
    if open_at is not None:
        stored["f"] = {"fb-1": [open_at, "open"], "fb-2": [None, "open"]}
    return stored


@pytest.mark.parametrize("open_at", [None, 1_795_999_000_001])
def test_body_equals_the_mirrors_reader(open_at: int | None) -> None:
    view = profile_view("c-1", _stored(open_at))  # type: ignore[arg-type]
    raw = _hash(view)
    body = profile_body(raw, NOW)
    assert body is not None
    expected = with_ages(decode_fields(raw) or {}, NOW)
    decoded = json.loads(body)
    assert decoded == expected
    assert list(decoded) == list(expected)  # same attribute order too
    if open_at is not None:
        assert decoded[AGE] == (NOW - open_at) / 1000


def test_non_ascii_and_quotes_survive() -> None:
    view = {"customer_id": 'c-"ü"', "segment": "präferenz\n", "oldest_open_feedback_at": None}
    raw = _hash(view)
    raw[b'odd "name"'] = b"1"
    body = profile_body(raw, NOW)
    assert body is not None
    assert json.loads(body) == with_ages(decode_fields(raw) or {}, NOW)


def test_missing_hash_is_none_and_a_stored_age_is_replaced() -> None:
    assert profile_body({}, NOW) is None
    raw = _hash({"customer_id": "c-2", "oldest_open_feedback_at": NOW - 2000})
    raw[AGE.encode()] = b"999999"
    body = profile_body(raw, NOW)
    assert body is not None
    assert json.loads(body)[AGE] == 2.0


def test_a_non_integer_oldest_time_is_refused() -> None:
    raw = _hash({"customer_id": "c-3"})
    raw[b"oldest_open_feedback_at"] = b'"yesterday"'
    with pytest.raises(ValueError, match="yesterday"):
        profile_body(raw, NOW)
