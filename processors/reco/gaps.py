"""Reading back the feedback a checkpoint missed.

Offsets are committed by Faust every few seconds, the model is checkpointed every
``checkpoint_interval_seconds``: after a crash the group may resume past the checkpoint. Those
events' other effects are durable (table changelog before commit), only the model lacks them, so
the learner reads exactly that range back from Kafka before going on.
"""

from __future__ import annotations

from typing import Any

from cxstream.errors import ServiceError
from cxstream.settings import Settings
from streams.codec import AvroCodec
from streams.kafka_config import confluent_config


def read_range(
    settings: Settings, codec: AvroCodec, topic: str, partition: int, start: int, end: int
) -> list[tuple[int, dict[str, Any]]]:
    """(offset, record) of ``topic[partition]`` offsets ``start <= o < end`` (undecodable skipped;
    they went to the dead letters the first time)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        confluent_config(
            settings,
            **{
                "group.id": f"{settings.worker.app_id}-reco-gap",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            },
        )
    )
    out: list[tuple[int, dict[str, Any]]] = []
    try:
        consumer.assign([TopicPartition(topic, partition, start)])
        position = start
        idle = 0
        while position < end:
            messages = consumer.consume(5000, timeout=1.0)
            if not messages:
                idle += 1
                if idle > 30:
                    raise ServiceError(
                        f"reco gap read: {topic}[{partition}] stalled at {position} (want {end})"
                    )
                continue
            for message in messages:
                offset = message.offset()
                value = message.value()
                if message.error() is not None or offset is None or value is None:
                    continue
                position = offset + 1
                if offset >= end:
                    break
                try:
                    out.append((offset, codec.decode(value).record))
                except Exception:  # undecodable: dead-lettered when the lane first read it
                    continue
    finally:
        consumer.close()
    return out
