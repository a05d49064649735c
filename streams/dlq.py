"""Dead letters: messages that cannot be processed go, unchanged, to ``settings.topic("dlq")``.

Faust itself only logs and skips undecodable messages. Here every input that fails to decode
(``DecodeError``), does not match its schema or a processor's own checks (``ValidationError``)
is produced with its ORIGINAL key and value bytes, the original headers, and headers saying
where it came from and why it failed, so it can be inspected and replayed. It is counted per
reason; the consumer then acks it and goes on with the next message.

Header names (values are UTF-8 bytes)::

    cx.dlq.source.topic / .partition / .offset / .timestamp   where it was read
    cx.dlq.error.class / .reason / .message / .field          what went wrong
    cx.dlq.step                                              which processor/step refused it
    cx.dlq.at                                                when (epoch ms)
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cxstream.errors import DecodeError, ValidationError

#: logical name of the dead-letter topic: ``settings.topic(DLQ_TOPIC)``
DLQ_TOPIC = "dlq"
HEADER_PREFIX = "cx.dlq."
H_SOURCE_TOPIC = "cx.dlq.source.topic"
H_SOURCE_PARTITION = "cx.dlq.source.partition"
H_SOURCE_OFFSET = "cx.dlq.source.offset"
H_SOURCE_TIMESTAMP = "cx.dlq.source.timestamp"
H_ERROR_CLASS = "cx.dlq.error.class"
H_ERROR_REASON = "cx.dlq.error.reason"
H_ERROR_MESSAGE = "cx.dlq.error.message"
H_ERROR_FIELD = "cx.dlq.error.field"
H_STEP = "cx.dlq.step"
H_AT = "cx.dlq.at"

#: error messages can quote a whole record; headers stay small
MAX_MESSAGE_CHARS = 1000

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """The consumed message as the dead-letter topic needs it, whatever client read it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    headers: Sequence[tuple[str, bytes]] = ()

    @classmethod
    def from_faust(cls, message: Any) -> SourceMessage:
        """From a ``faust.types.Message`` (timestamps there are float seconds)."""
        timestamp = message.timestamp
        return cls(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
            timestamp_ms=None if timestamp is None else round(timestamp * 1000),
            headers=_header_list(message.headers),
        )

    @classmethod
    def from_confluent(cls, message: Any) -> SourceMessage:
        """From a ``confluent_kafka.Message``."""
        kind, timestamp = message.timestamp()
        return cls(
            topic=message.topic(),
            partition=message.partition(),
            offset=message.offset(),
            key=message.key(),
            value=message.value(),
            timestamp_ms=timestamp if kind else None,
            headers=_header_list(message.headers()),
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message to produce to the dead-letter topic."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    reason: str


def reason_of(error: Exception) -> str:
    """Short machine-readable cause: the codec's reason, ``invalid`` for schema/semantic errors."""
    if isinstance(error, DecodeError):
        return error.reason
    if isinstance(error, ValidationError):
        return "invalid"
    return "error"


def build_dead_letter(
    dlq_topic: str,
    source: SourceMessage,
    error: Exception,
    *,
    step: str,
    now_ms: int | None = None,
) -> DeadLetter:
    """The dead letter for ``source``: original key, value and headers plus ours."""
    reason = reason_of(error)
    ours: dict[str, str] = {
        H_SOURCE_TOPIC: source.topic,
        H_SOURCE_PARTITION: str(source.partition),
        H_SOURCE_OFFSET: str(source.offset),
        H_ERROR_CLASS: type(error).__name__,
        H_ERROR_REASON: reason,
        H_ERROR_MESSAGE: str(error)[:MAX_MESSAGE_CHARS],
        H_STEP: step,
        H_AT: str(int(time.time() * 1000) if now_ms is None else now_ms),
    }
    if source.timestamp_ms is not None:
        ours[H_SOURCE_TIMESTAMP] = str(source.timestamp_ms)
    if isinstance(error, ValidationError) and error.field:
        ours[H_ERROR_FIELD] = error.field
    # our headers replace same-named ones of a message that was dead-lettered before (replays)
    headers = [(k, v) for k, v in source.headers if not k.startswith(HEADER_PREFIX)]
    headers.extend((k, v.encode()) for k, v in ours.items())
    return DeadLetter(dlq_topic, source.key, source.value, headers, reason)


def header_map(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Headers of a dead letter as ``{name: text}`` (for tests, tools and replays)."""
    return {k: (v or b"").decode() for k, v in headers or ()}


@dataclass
class DeadLetterCounts:
    """How many messages went to the dead-letter topic, per reason and per source topic."""

    by_reason: Counter[str] = field(default_factory=Counter)
    by_topic: Counter[str] = field(default_factory=Counter)

    def add(self, letter: DeadLetter, source_topic: str) -> None:
        self.by_reason[letter.reason] += 1
        self.by_topic[source_topic] += 1

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())

    def snapshot(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_reason": dict(self.by_reason),
            "by_topic": dict(self.by_topic),
        }


#: sends one message; returns an awaitable that completes when the broker acknowledged it
Sender = Callable[[str, bytes | None, bytes | None, Headers], Awaitable[Awaitable[Any]]]


class DeadLetterQueue:
    """Async dead-letter producer for stream workers (Faust's producer by default)."""

    def __init__(self, topic: str, sender: Sender, counts: DeadLetterCounts | None = None):
        self.topic = topic
        self._sender = sender
        self.counts = counts if counts is not None else DeadLetterCounts()

    async def send(self, source: SourceMessage, error: Exception, *, step: str) -> Awaitable[Any]:
        """Queue the dead letter; await the returned awaitable for the broker's acknowledgement.

        Callers ack the source message only after that (see :mod:`streams.batching`).
        """
        letter = build_dead_letter(self.topic, source, error, step=step)
        pending = await self._sender(letter.topic, letter.key, letter.value, letter.headers)
        self.counts.add(letter, source.topic)
        return pending

    @staticmethod
    async def delivered(pending: Sequence[Awaitable[Any]]) -> None:
        """Wait for the broker to acknowledge queued dead letters (raises if one failed)."""
        if pending:
            await asyncio.gather(*pending)


def faust_sender(app: Any) -> Sender:
    """A :data:`Sender` over the Faust app's own producer (started with the worker)."""

    async def send(
        topic: str, key: bytes | None, value: bytes | None, headers: Headers
    ) -> Awaitable[Any]:
        return await app.producer.send(
            topic, key, value, partition=None, timestamp=None, headers=headers
        )

    return send


def _header_list(headers: Any) -> list[tuple[str, bytes]]:
    if not headers:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(k), v if isinstance(v, bytes) else str(v).encode()) for k, v in items]
