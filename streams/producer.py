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

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
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
        # Java's (and aiokafka's) partitioner: a key lands on the partition Faust's table
        # routing computes for it, so web views can route a lookup to the owning worker
        "partitioner": "murmur2_random",
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
        if on_delivery is None:
            # nobody asked for success reports: librdkafka then reports only failures (each
            # still reaches _on_report with its event id), which saves a Python callback per
            # acknowledged event, ~a fifth of a send; successes are counted in ``delivered``
            conf.setdefault("delivery.report.only.error", True)
        self._success_reports = not _truthy(conf.get("delivery.report.only.error", False))
        try:
            self._producer = Producer(conf)
        except KafkaException as exc:
            raise ServiceError(f"creating the Kafka producer failed: {exc}") from exc
        # per event type: (topic, partition-key fields)
        self._routes: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._produce = self._producer.produce
        self._failures: list[DeliveryReport] = []
        self._delivered = 0
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
        # the hot path of the SDK: one route lookup, the key and send inlined (see _send)
        value = self.codec.encode(name, record)
        if len(value) > self._max_bytes:
            raise ValidationError(
                f"encoded event is {len(value)} bytes, limit {self._max_bytes}", schema=name
            )
        route = self._routes.get(name)
        if route is None:
            route = self._route(name)
        if key is None:
            key = partition_key(name, route[1], record)
        event_id = record.get("event_id")
        if event_id is not None:
            event_id = str(event_id)
        self._send(topic or route[0], value, key, headers, event_id, name=name)

    def produce_many(
        self,
        name: str,
        records: Iterable[Mapping[str, Any]],
        *,
        topic: str | None = None,
    ) -> int:
        """Validate and encode every record of type ``name``, then queue them all in order.

        All or nothing up to the queue: every record is validated, encoded and keyed (as by
        :meth:`produce`, with the schema's partition key) *before* any is sent, so a
        ``ValidationError`` (naming the field; a note gives the record's position) leaves
        nothing of this call queued. The events are then handed to librdkafka in chunks
        of one ``produce_batch`` per topic, in the order given. A full local queue serves
        delivery reports and retries the rest in order (librdkafka fails every message after
        the first one refused for a full queue), so nothing is dropped or reordered; a message
        librdkafka refuses for another reason is reported like a failed delivery (counted,
        passed to ``on_delivery``, raised by ``flush()``). Headers are not supported
        (``produce_batch`` would silently drop them): use :meth:`produce` for those. Returns
        the number of events queued.
        """
        route = self._routes.get(name)
        if route is None:
            route = self._route(name)
        fields = route[1]
        encode = self.codec.encode
        max_bytes = self._max_bytes
        on_report = self._on_report
        batch: list[dict[str, Any]] = []
        append = batch.append
        for index, record in enumerate(records):
            try:
                value = encode(name, record)
                if len(value) > max_bytes:
                    raise ValidationError(
                        f"encoded event is {len(value)} bytes, limit {max_bytes}", schema=name
                    )
                key = partition_key(name, fields, record)
            except ValidationError as exc:
                exc.add_note(f"record {index} of the produce_many call; nothing of it was sent")
                raise
            event_id = record.get("event_id")
            append(
                {
                    "value": value,
                    "key": key,
                    "callback": partial(
                        on_report, None if event_id is None else str(event_id)
                    ),
                }
            )
        self._send_batch(topic or route[0], batch, name=name)
        return len(batch)

    #: events handed to one ``produce_batch`` call at most (bounds the retry of a full queue)
    batch_chunk = 10_000

    def _send_batch(self, topic: str, batch: list[dict[str, Any]], *, name: str) -> None:
        if self._closed:
            raise ServiceError(f"producing {len(batch)} {name} events: the producer is closed")
        producer = self._producer
        chunk = self.batch_chunk
        start = 0
        while start < len(batch):
            part = batch[start : start + chunk]
            try:
                queued: int = producer.produce_batch(topic, part)
            except (KafkaException, BufferError) as exc:
                raise ServiceError(
                    f"producing {len(batch) - start} {name} events to {topic}: {exc}"
                ) from exc
            if queued == len(part):
                self.produced += queued
                start += queued
                producer.poll(0)
                continue
            # refused messages carry "_error" and get no delivery report; those refused for a
            # full queue are a suffix of the chunk (librdkafka fails the rest once it is full)
            retry_from = len(part)
            for i, message in enumerate(part):
                error = message.pop("_error", None)
                if error is None:
                    self.produced += 1
                elif error.code() == KafkaError._QUEUE_FULL:
                    retry_from = i
                    break
                else:
                    self.produced += 1
                    self._refused(message, topic, error)
            for message in part[retry_from:]:
                message.pop("_error", None)
            start += retry_from
            if retry_from < len(part):
                # backpressure, never drop: serve delivery reports until there is room
                producer.poll(0.05)

    def _refused(self, message: dict[str, Any], topic: str, error: KafkaError) -> None:
        # counted as produced and failed, reported through the message's own callback
        callback = message["callback"]
        event_id = callback.args[0]
        self.failed += 1
        report = DeliveryReport(event_id, topic, None, None, error)
        if len(self._failures) < self.max_kept_failures:
            self._failures.append(report)
        log.warning("event %s to %s not queued: %s", event_id, topic, error)
        if self._on_delivery is not None:
            self._on_delivery(report)

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
        callback = partial(self._on_report, event_id)
        produce = self._produce
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
            self._delivered += 1
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

    def _route(self, name: str) -> tuple[str, tuple[str, ...]]:
        """Topic and partition-key fields of event type ``name``, looked up once."""
        fields: tuple[str, ...] = tuple(self.codec.registry.latest(name).partition_key)
        route = self._routes[name] = (self.settings.topic(name), fields)
        return route

    def _on_client_error(self, err: KafkaError) -> None:
        # connection-level trouble (broker down, auth failed); per-event failures still come
        # through the delivery callbacks once message.timeout.ms expires
        log.warning("kafka producer: %s", err)

    # -- completion --------------------------------------------------------------------------

    @property
    def delivered(self) -> int:
        """Events acknowledged by the broker.

        Exact whenever success reports are on (an ``on_delivery`` callback is given). Without
        one, librdkafka reports failures only and this is what is neither failed nor still in
        librdkafka's queue: exact after :meth:`flush`, a lower bound in between (the queue
        length also counts librdkafka's own pending events).
        """
        if self._success_reports:
            return self._delivered
        return max(0, self.produced - self.failed - len(self._producer))

    @property
    def in_flight(self) -> int:
        """Events queued or sent but not yet acknowledged or failed."""
        # not len(producer) when success reports are on: librdkafka counts its own pending
        # requests there too
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


def _truthy(value: Any) -> bool:
    """A librdkafka boolean property as given in a config dict (bool or "true"/"false")."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)
