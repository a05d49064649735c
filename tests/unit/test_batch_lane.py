"""The batch lane acks a batch only when it was applied within one consumer generation.

A rebalance that begins while a handler waits (the recommender waiting for Redis) must leave
the batch unacked, so its offsets cannot be committed for partitions this worker no longer owns
with table writes that the partition's recovery would not see. The consumer here is a minimal
stand-in with the three members the lane uses (``ack``, ``app.sensors``, ``_unacked_messages``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from weakref import WeakSet

from cxstream.bench.codec import sample_records
from cxstream.settings import Settings
from streams.batching import (
    BatchAbandonedError,
    BatchDecoder,
    BatchLane,
    InputEvent,
    LaneHandler,
    batch_still_current,
)
from streams.codec import build_codec
from streams.dlq import DeadLetterQueue

NAMES = frozenset(name for name, _ in sample_records(3, seed=3))


@dataclass(eq=False)
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None
    timestamp: float = 1.0
    acked: bool = False

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)


class Consumer:
    def __init__(self) -> None:
        self.acked: list[int] = []
        self._unacked_messages: WeakSet[Message] = WeakSet()
        self.app = SimpleNamespace(sensors=SimpleNamespace(on_message_out=lambda *a: None))

    def ack(self, message: Message) -> bool:
        message.acked = True
        self.acked.append(message.offset)
        return True


def _lane(*handlers: Any) -> BatchLane:
    codec = build_codec(Settings())

    async def never(*_: Any) -> Any:
        raise AssertionError("no dead letters expected")

    decoder = BatchDecoder(codec, DeadLetterQueue("dlq", never), expect=NAMES, step="t")
    lane = BatchLane(decoder)
    for index, handler in enumerate(handlers):
        lane.add(LaneHandler(f"h{index}", handler), NAMES)
    return lane


def _messages(consumer: Consumer, n: int = 3) -> list[Message]:
    codec = build_codec(Settings())
    messages = [
        Message("cx.events", 0, offset, codec.encode(name, record))
        for offset, (name, record) in enumerate(sample_records(n, seed=3))
    ]
    for message in messages:
        consumer._unacked_messages.add(message)
    return messages


def test_a_batch_applied_within_its_generation_is_acked() -> None:
    seen: list[int] = []

    def handler(events: list[InputEvent]) -> None:
        assert batch_still_current()
        seen.extend(event.offset for event in events)

    consumer = Consumer()
    messages = _messages(consumer)
    assert asyncio.run(_lane(handler).run(consumer, messages, lambda: True))
    assert seen == [0, 1, 2]
    assert consumer.acked == [0, 1, 2]


def test_a_rebalance_during_a_handler_leaves_the_batch_unacked_and_skips_the_rest() -> None:
    generation = {"current": True}
    later: list[int] = []

    async def waits_through_a_rebalance(events: list[InputEvent]) -> None:
        generation["current"] = False  # the group began rebalancing meanwhile
        assert not batch_still_current()

    def after(events: list[InputEvent]) -> None:
        later.extend(event.offset for event in events)

    consumer = Consumer()
    messages = _messages(consumer)
    lane = _lane(waits_through_a_rebalance, after)
    assert not asyncio.run(lane.run(consumer, messages, lambda: generation["current"]))
    assert consumer.acked == []
    assert later == []
    # no longer counted as in flight: the revocation does not wait for them
    assert len(consumer._unacked_messages) == 0
    assert lane.batches == 0


def test_a_handler_abandoning_its_batch_stops_the_lane_without_acks() -> None:
    later: list[int] = []

    async def abandons(events: list[InputEvent]) -> None:
        raise BatchAbandonedError("checkpoint not loaded")

    def after(events: list[InputEvent]) -> None:
        later.extend(event.offset for event in events)

    consumer = Consumer()
    messages = _messages(consumer)
    assert not asyncio.run(_lane(abandons, after).run(consumer, messages, lambda: True))
    assert consumer.acked == []
    assert later == []


def test_outside_a_lane_every_batch_counts_as_current() -> None:
    assert batch_still_current()
