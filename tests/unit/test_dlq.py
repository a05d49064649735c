"""Dead letters: headers, reasons, counts and the batch decoder's routing (no broker)."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from cxstream.bench.produce import sample_events
from cxstream.errors import DecodeError, ValidationError
from cxstream.settings import Settings
from streams.batching import BatchDecoder, decode_input
from streams.codec import DecodedEvent, build_codec
from streams.dlq import (
    H_AT,
    H_ERROR_CLASS,
    H_ERROR_FIELD,
    H_ERROR_MESSAGE,
    H_ERROR_REASON,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TIMESTAMP,
    H_SOURCE_TOPIC,
    H_STEP,
    MAX_MESSAGE_CHARS,
    DeadLetterCounts,
    DeadLetterQueue,
    SourceMessage,
    build_dead_letter,
    header_map,
    reason_of,
)

EVENT = "channel_interaction"
SOURCE = SourceMessage(
    topic="cx.channel_interaction",
    partition=3,
    offset=41,
    key=b"C0000001",
    value=b"\x01garbage",
    timestamp_ms=1_796_000_000_000,
    headers=[("traceparent", b"00-abc"), ("cx.dlq.error.reason", b"stale")],
)


def test_dead_letter_keeps_the_original_bytes_and_says_where_and_why() -> None:
    error = DecodeError("magic byte 1, expected 0", reason="bad_magic")
    letter = build_dead_letter("cx.dlq", SOURCE, error, step="channel_counts", now_ms=123)
    assert (letter.topic, letter.key, letter.value) == ("cx.dlq", SOURCE.key, SOURCE.value)
    assert letter.reason == "bad_magic"
    headers = header_map(letter.headers)
    assert headers == {
        "traceparent": "00-abc",  # original headers are kept ...
        H_SOURCE_TOPIC: "cx.channel_interaction",
        H_SOURCE_PARTITION: "3",
        H_SOURCE_OFFSET: "41",
        H_SOURCE_TIMESTAMP: "1796000000000",
        H_ERROR_CLASS: "DecodeError",
        H_ERROR_REASON: "bad_magic",  # ... except our own from an earlier dead-lettering
        H_ERROR_MESSAGE: "magic byte 1, expected 0",
        H_STEP: "channel_counts",
        H_AT: "123",
    }


def test_validation_errors_name_the_field_and_long_messages_are_cut() -> None:
    error = ValidationError("x" * 5000, schema=EVENT, field="customer_id")
    headers = header_map(build_dead_letter("cx.dlq", SOURCE, error, step="s").headers)
    assert headers[H_ERROR_REASON] == "invalid"
    assert headers[H_ERROR_FIELD] == "customer_id"
    assert len(headers[H_ERROR_MESSAGE]) == MAX_MESSAGE_CHARS
    assert reason_of(RuntimeError("boom")) == "error"


@pytest.fixture
def codec() -> Any:
    return build_codec(Settings())


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "tombstone"),
        (b"", "empty"),
        (b"\x00\x00", "truncated"),
        (b"\x07" + b"\x00" * 10, "bad_magic"),
        (struct.pack(">bI", 0, 999_999) + b"\x00", "unknown_schema_id"),
    ],
)
def test_decode_input_reasons(codec: Any, value: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_input(codec, value, frozenset({EVENT}))
    assert caught.value.reason == reason


def test_an_event_of_another_type_is_refused(codec: Any) -> None:
    own = codec.registry.latest(EVENT)
    value = codec.encode(EVENT, sample_events(1)[0])
    assert decode_input(codec, value, frozenset({EVENT})).schema_id == own.schema_id
    with pytest.raises(DecodeError) as caught:
        decode_input(codec, value, frozenset({"transaction"}))
    assert caught.value.reason == "wrong_event_type"


class _Message:
    """The attributes of a Faust message that the decoder reads."""

    def __init__(self, offset: int, value: bytes | None) -> None:
        self.topic, self.partition, self.offset = "cx.channel_interaction", 0, offset
        self.key, self.value, self.timestamp = b"k", value, 1.5
        self.headers: list[tuple[str, bytes]] = []


async def test_batch_decoder_routes_bad_messages_to_dead_letters_in_order(codec: Any) -> None:
    sent: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []

    async def sender(topic: str, key: bytes | None, value: bytes | None, headers: Any) -> Any:
        # stands in for the broker connection only; returns an already-completed delivery
        sent.append((topic, key, value, headers))

        async def delivered() -> None:
            return None

        return delivered()

    def check(event: DecodedEvent) -> None:
        if not event.record["customer_id"] and not event.record["anonymous_id"]:
            raise ValidationError("no key", schema=event.name, field="customer_id")

    events = sample_events(3, seed=5)
    keyless = events[2] | {"customer_id": None, "anonymous_id": None}
    values = [codec.encode(EVENT, events[0]), b"\x09junk", None, codec.encode(EVENT, events[1])]
    values.append(codec.encode(EVENT, keyless))
    counts = DeadLetterCounts()
    decoder = BatchDecoder(
        codec, DeadLetterQueue("cx.dlq", sender, counts), expect=EVENT, step="t", check=check
    )
    good = await decoder.decode([_Message(i, v) for i, v in enumerate(values)])

    assert [(g.offset, g.record["event_id"]) for g in good] == [
        (0, events[0]["event_id"]),
        (3, events[1]["event_id"]),
    ]
    assert good[0].timestamp_ms == 1500
    assert [(s[2], header_map(s[3])[H_ERROR_REASON]) for s in sent] == [
        (b"\x09junk", "bad_magic"),
        (None, "tombstone"),
        (values[4], "invalid"),
    ]
    assert counts.snapshot() == {
        "total": 3,
        "by_reason": {"bad_magic": 1, "tombstone": 1, "invalid": 1},
        "by_topic": {"cx.channel_interaction": 3},
    }
