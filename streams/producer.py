"""Producer SDK: validate, encode and publish events to their topics with delivery reports.

>>> with EventProducer(settings, codec) as producer:      # doctest: +SKIP
...     producer.produce("transaction", record)
...     producer.flush()                                  # raises DeliveryError if any failed

Guarantees: the record is validated against its schema before anything is sent (the codec's
``ValidationError`` names the field and propagates unchanged); the producer is idempotent with
``acks=all`` so librdkafka's retries never duplicate or reorder; a full local queue blocks the
caller (poll and retry) instead of dropping; every failure reaches ``on_delivery`` with the event
id and is counted, and ``flush()``/``close()`` raise if anything was not delivered.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from cxstream.errors import ServiceError, ValidationError
from cxstream.settings import Settings
from streams.kafka_config import confluent_config
from streams.registry import SchemaRegistry

log = logging.getLogger(__name__)

Headers = list[tuple[str, str | bytes | None]]


class Encoder(Protocol):
    """What the producer needs from :class:`streams.codec.AvroCodec`."""

    max_event_bytes: int
    registry: SchemaRegistry

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes: ...


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """Outcome of one produced event, passed to ``on_delivery``."""

    event_id: str | None
    topic: str | None
    partition: int | None
    offset: int | None
    #: ``None`` when the broker acknowledged the event
    error: KafkaError | None

    @property
    def ok(self) -> bool:
        return self.error is None


DeliveryCallback = Callable[[DeliveryReport], None]


class DeliveryError(ServiceError):
    """Events were not acknowledged by Kafka (failed, or still queued at the flush timeout)."""

    def __init__(self, message: str, *, failed: Sequence[DeliveryReport] = (), pending: int = 0):
        super().__init__(message)
        self.failed = tuple(failed)
        self.pending = pending


def producer_tuning(settings: Settings) -> dict[str, Any]:
    """librdkafka tuning of the SDK; connection and security come from ``confluent_config``.

    Chosen by a sweep of pre-encoded sends (2 cores, local Kafka 4.1, 4 partitions, ~95-byte
    events): linger 0/5/20 ms x batch 256 KB/1 MB x none/lz4/zstd all gave 130-200k events/s,
    within the noise of a shared machine (Python's per-send cost dominates), while on the wire
    zstd sent 0.51 of the payload bytes, lz4 0.76, none 1.11. Hence zstd, 5 ms, 1 MB. Faust's
    consumers need ``cramjam`` to read zstd/lz4 batches.
    """
    kafka = settings.kafka
    return {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": kafka.producer_linger_ms,
        "batch.size": kafka.producer_batch_bytes,
        "compression.type": kafka.producer_compression,
        # the local queue bounds memory; when full, produce() blocks (see _send)
        "queue.buffering.max.messages": kafka.producer_queue_messages,
        # oversized events are rejected before sending; this only has to admit the largest one
        "message.max.bytes": max(1_000_000, settings.max_event_bytes + 64 * 1024),
    }


class EventProducer:
    """Publishes Avro events to ``settings.topic(name)``, keyed by the schema's partition key."""

    #: failed reports kept for the DeliveryError raised by flush() (the counter counts them all)
    max_kept_failures = 100
    #: delivery reports are served at least every this many sends (and by flush/poll)
    poll_every = 64

    def __init__(
        self,
        settings: Settings,
        codec: Encoder,
        *,
        on_delivery: DeliveryCallback | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self._on_delivery = on_delivery
        self._max_bytes = min(codec.max_event_bytes, settings.max_event_bytes)
        conf = confluent_config(settings) | producer_tuning(settings) | dict(config or {})
        conf["error_cb"] = self._on_client_error
        try:
            self._producer = Producer(conf)
        except KafkaException as exc:
            raise ServiceError(f"creating the Kafka producer failed: {exc}") from exc
        self._keys: dict[str, tuple[str, ...]] = {}
        self._topics: dict[str, str] = {}
        self._failures: list[DeliveryReport] = []
        self.delivered = 0
        self.failed = 0
        self.produced = 0
        self._unpolled = 0
        self._closed = False

    # -- sending -----------------------------------------------------------------------------

    def produce(
        self,
        name: str,
        record: Mapping[str, Any],
        *,
        key: str | bytes | None = None,
        headers: Headers | None = None,
        topic: str | None = None,
    ) -> None:
        """Validate and encode ``record`` as event type ``name`` and queue it for sending.

        ``key`` defaults to the first non-null field of the schema's ``partition_key``; the
        topic defaults to ``settings.topic(name)``. Raises ``ValidationError`` (nothing sent)
        when the record does not match the schema, is too large or has no key.
        """
        value = self.codec.encode(name, record)
        if len(value) > self._max_bytes:
            raise ValidationError(
                f"encoded event is {len(value)} bytes, limit {self._max_bytes}", schema=name
            )
        if key is None:
            key = self._key_of(name, record)
        self._send(topic or self._topic(name), value, key, headers, _event_id(record), name=name)

    def produce_encoded(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: str | bytes | None = None,
        headers: Headers | None = None,
        event_id: str | None = None,
    ) -> None:
        """Queue already-framed bytes unchanged (dead letters, replays, benchmarks)."""
        self._send(topic, value, key, headers, event_id, name=topic)

    def _send(
        self,
        topic: str,
        value: bytes | None,
        key: str | bytes | None,
        headers: Headers | None,
        event_id: str | None,
        *,
        name: str,
    ) -> None:
        if self._closed:
            raise ServiceError(f"producing {name} {event_id}: the producer is closed")
        callback = functools.partial(self._on_report, event_id)
        produce = self._producer.produce
        while True:
            try:
                if headers:
                    produce(topic, value, key, on_delivery=callback, headers=headers)
                else:
                    produce(topic, value, key, on_delivery=callback)
                break
            except BufferError:
                # local queue full: serve delivery reports until there is room (backpressure,
                # never drop); librdkafka's message.timeout.ms bounds how long this can take
                self._producer.poll(0.05)
            except KafkaException as exc:
                raise ServiceError(f"producing {name} {event_id} to {topic}: {exc}") from exc
        self.produced += 1
        # serve delivery reports of earlier sends now and then, without waiting (a poll per
        # send would cost a third of the send itself)
        self._unpolled += 1
        if self._unpolled >= self.poll_every:
            self._unpolled = 0
            self._producer.poll(0)

    def _on_report(self, event_id: str | None, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.delivered += 1
            if self._on_delivery is None:
                return
            report = DeliveryReport(event_id, msg.topic(), msg.partition(), msg.offset(), None)
        else:
            self.failed += 1
            report = DeliveryReport(event_id, msg.topic(), msg.partition(), None, err)
            if len(self._failures) < self.max_kept_failures:
                self._failures.append(report)
            log.warning("event %s to %s not delivered: %s", event_id, msg.topic(), err)
        if self._on_delivery is not None:
            self._on_delivery(report)

    def _key_of(self, name: str, record: Mapping[str, Any]) -> str:
        fields = self._keys.get(name)
        if fields is None:
            fields = self._keys[name] = self._partition_fields(name)
        return partition_key(name, fields, record)

    def _partition_fields(self, name: str) -> tuple[str, ...]:
        fields: tuple[str, ...] = self.codec.registry.latest(name).partition_key
        return fields

    def _topic(self, name: str) -> str:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = self.settings.topic(name)
        return topic

    def _on_client_error(self, err: KafkaError) -> None:
        # connection-level trouble (broker down, auth failed); per-event failures still come
        # through the delivery callbacks once message.timeout.ms expires
        log.warning("kafka producer: %s", err)

    # -- completion --------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Events queued or sent but not yet acknowledged or failed."""
        # not len(producer): librdkafka counts its own pending requests there too
        return self.produced - self.delivered - self.failed

    def poll(self, timeout: float = 0) -> int:
        """Serve delivery reports; returns how many were served."""
        served: int = self._producer.poll(timeout)
        return served

    def flush(self, timeout: float | None = None) -> int:
        """Wait until every queued event is acknowledged; returns the delivered count so far.

        Raises ``DeliveryError`` when events failed since the previous flush, or are still
        pending after ``timeout`` seconds (``None`` waits as long as librdkafka retries).
        """
        pending: int = self._producer.flush(-1 if timeout is None else timeout)
        failures, self._failures = self._failures, []
        if failures or pending:
            first = failures[0] if failures else None
            detail = f"; first: event {first.event_id}: {first.error}" if first else ""
            raise DeliveryError(
                f"{len(failures)} events failed and {pending} still pending after flush{detail}",
                failed=failures,
                pending=pending,
            )
        return self.delivered

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush and stop accepting events; raises ``DeliveryError`` like :meth:`flush`."""
        if self._closed:
            return
        try:
            self.flush(timeout)
        finally:
            self._closed = True

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def partition_key(name: str, fields: Sequence[str], record: Mapping[str, Any]) -> str:
    """The Kafka key of ``record``: its first non-null (non-empty) field among ``fields``.

    ``fields`` is the schema's ``partition_key``; raises ``ValidationError`` naming the first
    field when all are null, since an unkeyed event would land on a random partition and break
    per-customer ordering.
    """
    for field in fields:
        value = record.get(field)
        if value is not None and value != "":
            return str(value)
    raise ValidationError(
        f"no partition key: {' and '.join(fields)} are all null", schema=name, field=fields[0]
    )


def _event_id(record: Mapping[str, Any]) -> str | None:
    event_id = record.get("event_id")
    return None if event_id is None else str(event_id)
