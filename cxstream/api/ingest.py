"""``POST /v1/events``: validate each JSON event against its Avro schema and produce it to Kafka.

Request body: ``{"events": [{"type": "<input event type>", "event": {...fields...}}, ...]}``.
Timestamps are int epoch milliseconds; top-level timestamp fields (``occurred_at`` ...) also take
ISO-8601 strings (``"2026-12-01T08:30:00Z"``; no offset means UTC). A schema's ``source`` field,
when absent, is set to the name of the frontend whose API key sent the request, and every
produced message carries that name in the ``cx.ingest.frontend`` header.

Each event is checked on its own: an unknown or output type, a schema mismatch (the codec names
the field), an oversized event or a missing partition key rejects that event only, with its
index, reason and field; the valid events of the batch are still produced. An invalid event is
never produced: only bytes the codec wrote after validating are sent. The answer is sent once
Kafka acknowledged every accepted event (``acks=all``, idempotent producer), so a 200 means
durable; if an acknowledgement fails or does not come within ``api.request_timeout_seconds``
the answer is 503 and the client retries (downstream effects are idempotent per event id).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaException

from cxstream.errors import SchemaError, ServiceError, ValidationError
from cxstream.settings import Settings
from streams.codec import AvroCodec
from streams.producer import DeliveryReport, EventProducer, partition_key
from streams.topics import INPUT_EVENTS

log = logging.getLogger(__name__)

FRONTEND_HEADER = "cx.ingest.frontend"

#: per-event rejection reasons (also the ``reason`` label of the events metric)
MALFORMED = "malformed"  # the item is not {"type": str, "event": object}
UNKNOWN_TYPE = "unknown_type"
NOT_INPUT = "not_an_input"  # an output event type (profiles, alerts, ...) may not be posted
INVALID = "invalid"  # does not match the schema; ``field`` says where
OVERSIZED = "oversized"
NO_KEY = "no_key"
#: delivery outcomes of events that were valid
KAFKA_FAILED = "kafka_failed"
KAFKA_TIMEOUT = "kafka_timeout"


class BadRequestError(Exception):
    """The request as a whole is unusable; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_events(body: bytes, max_events: int) -> list[Any]:
    """The ``events`` array of a body; raises :class:`BadRequestError` naming the problem."""
    try:
        document = json.loads(body)
    except UnicodeDecodeError as exc:
        raise BadRequestError(400, f"body is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise BadRequestError(
            400, f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(document, dict):
        raise BadRequestError(
            400, f'body must be a JSON object {{"events": [...]}}, got {_kind(document)}'
        )
    events = document.get("events")
    if not isinstance(events, list):
        raise BadRequestError(400, f"body.events must be an array, got {_kind(events)}")
    extra = sorted(set(document) - {"events"})
    if extra:
        raise BadRequestError(
            400, f"unknown top-level field {extra[0]!r}; only 'events' is allowed"
        )
    if not events:
        raise BadRequestError(400, "body.events is empty")
    if len(events) > max_events:
        raise BadRequestError(
            413, f"{len(events)} events in one request, limit {max_events}: split the batch"
        )
    return events


@dataclass(frozen=True)
class _Route:
    topic: str
    key_fields: tuple[str, ...]
    has_source: bool
    timestamp_fields: tuple[str, ...]


@dataclass
class EventOutcome:
    """What happened to one event of a request."""

    index: int
    type: str | None
    status: str  # accepted | rejected | failed
    event_id: str | None = None
    reason: str | None = None
    field: str | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class IngestResult:
    outcomes: list[EventOutcome]

    @property
    def accepted(self) -> int:
        return sum(1 for o in self.outcomes if o.status == "accepted")

    @property
    def durable(self) -> bool:
        """No valid event failed or is still waiting for Kafka."""
        return all(o.status != "failed" for o in self.outcomes)

    def as_json(self) -> dict[str, Any]:
        rejected = sum(1 for o in self.outcomes if o.status == "rejected")
        return {
            "accepted": self.accepted,
            "rejected": rejected,
            "failed": len(self.outcomes) - self.accepted - rejected,
            "results": [o.as_json() for o in self.outcomes],
        }


@dataclass
class _Waiter:
    """Acknowledgements still expected for one request (filled from the poll thread)."""

    loop: asyncio.AbstractEventLoop
    remaining: int
    future: asyncio.Future[None]
    failures: dict[int, str] = field(default_factory=dict)

    def report(self, index: int, error: str | None) -> None:
        # called with the Ingestor's lock held
        if error is not None:
            self.failures[index] = error
        self.remaining -= 1
        if self.remaining == 0:
            self.loop.call_soon_threadsafe(_resolve, self.future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Ingestor:
    """Validates, encodes and produces posted events; waits for Kafka's acknowledgements.

    One :class:`EventProducer` per process; a thread serves its delivery reports, which are
    matched to the waiting request by (topic, event id) in send order.
    """

    poll_seconds = 0.05

    def __init__(
        self, settings: Settings, codec: AvroCodec, producer: EventProducer | None = None
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.max_event_bytes = settings.max_event_bytes
        self.timeout = settings.api.request_timeout_seconds
        self.producer = producer or EventProducer(settings, codec, on_delivery=self._on_delivery)
        self._routes = {name: self._route(name) for name in INPUT_EVENTS}
        self._lock = threading.Lock()
        self._waiting: dict[tuple[str, str], deque[tuple[_Waiter, int]]] = {}
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def _route(self, name: str) -> _Route:
        sv = self.codec.registry.latest(name)
        fields = sv.definition["fields"]
        return _Route(
            topic=self.settings.topic(name),
            key_fields=tuple(sv.partition_key),
            has_source=any(f["name"] == "source" for f in fields),
            timestamp_fields=tuple(f["name"] for f in fields if _is_timestamp(f["type"])),
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._poller is None:
            self._poller = threading.Thread(target=self._poll, name="ingest-delivery", daemon=True)
            self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(self.poll_seconds)

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
            self._poller = None
        self.producer.close(self.timeout)

    def producer_ready(self, timeout: float) -> None:
        """Raise ``ServiceError`` unless the producer's client gets cluster metadata in time."""
        # the SDK's own librdkafka handle: proves this producer's connection, not another's
        client = self.producer._producer
        try:
            metadata = client.list_topics(timeout=timeout)
        except KafkaException as exc:
            raise ServiceError(
                f"Kafka at {self.settings.kafka.bootstrap_servers} did not answer: {exc}"
            ) from exc
        if not metadata.brokers:
            raise ServiceError(f"Kafka at {self.settings.kafka.bootstrap_servers}: no broker")

    # -- one request -------------------------------------------------------------------------

    async def ingest(self, frontend: str, items: Sequence[Any]) -> IngestResult:
        """Check every item, produce the valid ones, wait until Kafka acknowledged them."""
        loop = asyncio.get_running_loop()
        outcomes: list[EventOutcome] = []
        ready: list[tuple[int, str, bytes, str, str]] = []  # index, topic, value, key, event id
        for index, item in enumerate(items):
            outcome, prepared = self._prepare(index, item, frontend)
            outcomes.append(outcome)
            if prepared is not None:
                ready.append((index, *prepared))
        if not ready:
            return IngestResult(outcomes)
        waiter = _Waiter(loop, len(ready), loop.create_future())
        headers: list[tuple[str, str | bytes | None]] = [(FRONTEND_HEADER, frontend)]
        with self._lock:  # registered before sending: a report may come at once
            for index, topic, _, _, event_id in ready:
                self._waiting.setdefault((topic, event_id), deque()).append((waiter, index))
        for index, topic, value, key, event_id in ready:
            try:
                self.producer.produce_encoded(
                    topic, value, key=key, headers=headers, event_id=event_id
                )
            except ServiceError as exc:
                with self._lock:
                    self._forget(topic, event_id, waiter, index)
                    waiter.report(index, str(exc))
        timed_out = False
        try:
            await asyncio.wait_for(waiter.future, self.timeout)
        except TimeoutError:
            timed_out = True
        with self._lock:
            failures = dict(waiter.failures)
            if timed_out:
                # late reports must not resolve a request that has already been answered
                for index, topic, _, _, event_id in ready:
                    self._forget(topic, event_id, waiter, index)
        for index, *_ in ready:
            outcome = outcomes[index]
            if index in failures:
                outcome.status, outcome.reason = "failed", KAFKA_FAILED
                outcome.error = f"not acknowledged by Kafka: {failures[index]}"
            elif timed_out:
                # it may still arrive: retrying it is safe (effects are idempotent per event id)
                outcome.status, outcome.reason = "failed", KAFKA_TIMEOUT
                outcome.error = f"no acknowledgement from Kafka within {self.timeout} s"
        return IngestResult(outcomes)

    def _prepare(
        self, index: int, item: Any, frontend: str
    ) -> tuple[EventOutcome, tuple[str, bytes, str, str] | None]:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            return _rejected(
                index,
                None,
                MALFORMED,
                "",
                'each item must be {"type": "<event type>", "event": {...}}',
            ), None
        name = item["type"]
        record = item.get("event")
        extra = sorted(set(item) - {"type", "event"})
        if extra:
            return _rejected(index, name, MALFORMED, "", f"unknown item field {extra[0]!r}"), None
        route = self._routes.get(name)
        if route is None:
            try:
                self.codec.registry.latest(name)
            except SchemaError:
                reason, message = UNKNOWN_TYPE, f"unknown event type {name!r}"
            else:
                reason, message = NOT_INPUT, f"{name} is an output event type; it cannot be posted"
            return _rejected(index, name, reason, "", message), None
        if not isinstance(record, dict):
            return _rejected(
                index, name, MALFORMED, "", f"event must be an object, got {_kind(record)}"
            ), None
        try:
            _convert_timestamps(name, record, route.timestamp_fields)
            if route.has_source and record.get("source") is None:
                record["source"] = frontend
            value = self.codec.encode(name, record)
            if len(value) > self.max_event_bytes:
                return _rejected(
                    index,
                    name,
                    OVERSIZED,
                    "",
                    f"encoded event is {len(value)} bytes, limit {self.max_event_bytes}",
                ), None
            key = partition_key(name, route.key_fields, record)
        except ValidationError as exc:
            message = str(exc.args[0])
            if message.startswith("no partition key"):
                reason = NO_KEY
            elif message.startswith("encoded event is"):  # the codec's own size limit
                reason = OVERSIZED
            else:
                reason = INVALID
            return _rejected(index, name, reason, exc.field, message), None
        event_id = str(record["event_id"])
        return EventOutcome(index, name, "accepted", event_id=event_id), (
            route.topic,
            value,
            key,
            event_id,
        )

    # -- delivery reports (poll thread, or the loop thread inside produce) --------------------

    def _on_delivery(self, report: DeliveryReport) -> None:
        if report.topic is None or report.event_id is None:
            return
        with self._lock:
            queue = self._waiting.get((report.topic, report.event_id))
            if not queue:
                return  # a request that already timed out
            waiter, index = queue.popleft()
            if not queue:
                del self._waiting[(report.topic, report.event_id)]
            waiter.report(index, None if report.ok else str(report.error))

    def _forget(self, topic: str, event_id: str, waiter: _Waiter, index: int) -> None:
        queue = self._waiting.get((topic, event_id))
        if queue is None:
            return
        try:
            queue.remove((waiter, index))
        except ValueError:
            return
        if not queue:
            del self._waiting[(topic, event_id)]


def _rejected(index: int, name: str | None, reason: str, field: str, error: str) -> EventOutcome:
    return EventOutcome(index, name, "rejected", reason=reason, field=field or None, error=error)


def _is_timestamp(avro_type: Any) -> bool:
    if isinstance(avro_type, list):
        return any(_is_timestamp(branch) for branch in avro_type)
    return isinstance(avro_type, dict) and avro_type.get("logicalType") == "timestamp-millis"


def _convert_timestamps(name: str, record: dict[str, Any], fields: Sequence[str]) -> None:
    """ISO-8601 strings of top-level timestamp fields -> int epoch ms (in place)."""
    for field_name in fields:
        value = record.get(field_name)
        if isinstance(value, str):
            record[field_name] = iso_to_epoch_ms(name, field_name, value)


def iso_to_epoch_ms(name: str, field_name: str, value: str) -> int:
    """``"2026-12-01T08:30:00Z"`` -> epoch ms; no offset means UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValidationError(
            f"{value[:40]!r} is neither int epoch milliseconds nor an ISO-8601 timestamp",
            schema=name,
            field=field_name,
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


def summary_by_type(result: IngestResult) -> Mapping[tuple[str, str, str], int]:
    """(type, outcome, reason) -> count, for the events metric."""
    counts: dict[tuple[str, str, str], int] = {}
    for outcome in result.outcomes:
        # client-chosen type names that are no schema would make label values unbounded
        known = outcome.reason not in (UNKNOWN_TYPE, MALFORMED) and outcome.type
        key = (
            outcome.type or "unknown" if known else "unknown",
            outcome.status,
            outcome.reason or "",
        )
        counts[key] = counts.get(key, 0) + 1
    return counts
