"""The profiles' changelog writer against a real broker: messages land where Faust's own table
write would put them (given partition, raw key and value, None = tombstone), ``wait`` returns
only once they are acknowledged, and a failed write raises naming the topic."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from cxstream.errors import ServiceError
from processors.profiles.changelog import ChangelogWriter, DirectJsonTable, Sends
from streams.batching import acting_for
from streams.kafka_config import confluent_config
from streams.topics import TopicSpec, delete_topics, ensure_topics
from tests.support.services import LocalStack

pytestmark = pytest.mark.integration


def _read(stack: LocalStack, topic: str, partition: int, count: int) -> list[tuple[bytes, bytes]]:
    consumer = Consumer(
        confluent_config(
            stack.settings,
            **{"group.id": f"t-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False},
        )
    )
    consumer.assign([TopicPartition(topic, partition, 0)])
    out: list[tuple[bytes, bytes]] = []
    try:
        for _ in range(100):
            for message in consumer.consume(num_messages=count, timeout=0.2):
                if message.error() is None:
                    out.append((message.key(), message.value()))
            if len(out) >= count:
                break
    finally:
        consumer.close()
    return out


async def test_writes_land_on_the_given_partition_and_wait_means_acknowledged(
    local_stack: LocalStack,
) -> None:
    settings = local_stack.settings
    topic = f"test-plog-{uuid.uuid4().hex[:8]}-profiles-changelog"
    ensure_topics(settings, [TopicSpec(topic, partitions=3, cleanup_policy="compact")])
    writer = ChangelogWriter(settings)
    try:
        first, second = Sends(topic), Sends(topic)
        writer.send(first, 2, [(b"C1", b'{"v":1}'), (b"C2", b'{"v":4}')])
        writer.send(second, 2, [(b"C1", b'{"v":2}'), (b"C3", None)])
        assert (first.remaining, second.remaining) == (2, 2)
        await writer.wait(first, second)
        assert (first.remaining, second.remaining) == (0, 0)
        # acknowledged means readable, in the order written (the last value of a key wins)
        got = _read(local_stack, topic, 2, 4)
        assert got == [(b"C1", b'{"v":1}'), (b"C2", b'{"v":4}'), (b"C1", b'{"v":2}'), (b"C3", None)]
        assert [_high(local_stack, topic, p) for p in range(3)] == [0, 0, 4]
        assert writer.stats()["sent"] == 4
        # drain (what the hooked Faust flush runs before a commit): every queued write acked
        third = Sends(topic, writer)
        writer.send(third, 1, [(b"C9", b'{"v":9}')])
        await writer.drain()
        assert third.remaining == 0
        assert _high(local_stack, topic, 1) == 1
    finally:
        writer.flush(10)
        delete_topics(settings, [topic])


class _FaustTableShape:
    """What DirectJsonTable uses of a Faust table: its store, changelog name, items."""

    def __init__(self, changelog: str) -> None:
        self.data: dict[object, object] = {}
        self.changelog_topic = self
        self._name = changelog

    def get_topic_name(self) -> str:
        return self._name

    def items(self) -> object:
        return self.data.items()


class _Message:
    def __init__(self, partition: int) -> None:
        self.topic, self.partition = "t.source", partition


async def test_direct_json_table_writes_what_faust_recovery_reads(local_stack: LocalStack) -> None:
    from faust.serializers import codecs

    settings = local_stack.settings
    topic = f"test-plog-{uuid.uuid4().hex[:8]}-profiles-seen-changelog"
    ensure_topics(settings, [TopicSpec(topic, partitions=3, cleanup_policy="compact")])
    writer = ChangelogWriter(settings)
    table = DirectJsonTable(_FaustTableShape(topic), writer)  # type: ignore[arg-type]
    try:
        with acting_for(_Message(1)):
            table["1:40"] = {"at": 5, "ids": [["e1", 40], ["e2", 41]]}
            table["1:42"] = ["C1", "C2"]
            del table["1:40"]
        with pytest.raises(KeyError):
            del table["1:40"]
        assert "1:42" in table
        assert "1:40" not in table
        assert table["1:42"] == ["C1", "C2"]
        with pytest.raises(ServiceError, match="outside a source event"):
            table["1:43"] = []
        await writer.drain()
        got = _read(local_stack, topic, 1, 3)
        # the bytes Faust's json serializer turns back into the values written
        decoded = [
            (codecs.loads("json", key), None if value is None else codecs.loads("json", value))
            for key, value in got
        ]
        assert decoded == [
            ("1:40", {"at": 5, "ids": [["e1", 40], ["e2", 41]]}),
            ("1:42", ["C1", "C2"]),
            ("1:40", None),
        ]
        assert [_high(local_stack, topic, p) for p in range(3)] == [0, 3, 0]
    finally:
        writer.flush(10)
        delete_topics(settings, [topic])


def _high(stack: LocalStack, topic: str, partition: int) -> int:
    consumer = Consumer(confluent_config(stack.settings, **{"group.id": "t-watermarks"}))
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        return int(high)
    finally:
        consumer.close()


async def _send_and_wait(writer: ChangelogWriter, sends: Sends) -> None:
    writer.send(sends, 5, [(b"C1", b"{}")])
    await writer.wait(sends)


async def _send_and_drain(writer: ChangelogWriter, sends: Sends) -> None:
    writer.send(sends, 5, [(b"C1", b"{}")])
    await writer.drain()


async def test_a_failed_write_raises_naming_the_topic(local_stack: LocalStack) -> None:
    settings = local_stack.settings
    topic = f"test-plog-{uuid.uuid4().hex[:8]}-profiles-changelog"
    ensure_topics(settings, [TopicSpec(topic, partitions=1, cleanup_policy="compact")])
    writer = ChangelogWriter(settings)
    try:
        sends = Sends(topic)
        # partition 5 does not exist: librdkafka refuses it at once or fails the delivery
        with pytest.raises(ServiceError, match=topic):
            await _send_and_wait(writer, sends)
        # a writer-level failure is raised by drain, i.e. before Faust's commit
        with pytest.raises(ServiceError, match=topic):
            await _send_and_drain(writer, Sends(topic, writer))
    finally:
        delete_topics(settings, [topic])
