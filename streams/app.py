"""Faust app factory: ``create_app(settings, processors=[...])``.

There is no module-level app: each worker builds one from its settings, and feature modules
(processors) attach batch agents, tables and web views in ``register(app, context)``. Topics
carry raw bytes (``value_serializer="raw"``) and are decoded with our Avro codec through
:mod:`streams.batching`, so undecodable bytes go to the dead-letter topic instead of crashing
or being silently skipped by Faust. ``context.batch_agent`` is the fast path (whole fetched
batches per partition); ``context.batches`` wraps a regular Faust agent stream.

Web views of a worker: ``GET /v1/stats`` (every processor's stats and the dead-letter counts)
plus the processors' own (``GET /v1/stats/channels``).

Faust is imported inside the functions: importing it parses argv and touches the event loop,
which must not happen when the CLI only lists its commands.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from cxstream.settings import Settings
from streams.batching import (
    FETCH_MAX_WAIT_ATTR,
    FETCH_MIN_BYTES_ATTR,
    GC_BETWEEN_BATCHES_ATTR,
    AfterFetch,
    BatchDecoder,
    BatchHandler,
    BatchLane,
    Check,
    InputEvent,
    LaneHandler,
    after_each_fetch,
    batches,
    install_batch_lanes,
)
from streams.codec import AvroCodec, build_codec
from streams.dlq import DLQ_TOPIC, DeadLetterCounts, DeadLetterQueue, faust_sender
from streams.gc_tuning import BetweenBatchesCollector
from streams.kafka_config import faust_broker_settings
from streams.producer import partition_key
from streams.topics import DLQ_MAX_MESSAGE_BYTES

if TYPE_CHECKING:
    import faust


@dataclass
class AppContext:
    """What processors get besides the app: settings, codec, dead letters, helpers."""

    settings: Settings
    codec: AvroCodec
    dead_letters: DeadLetterQueue
    #: processor name -> a callable returning its stats for /v1/stats and metrics
    stats: dict[str, Any] = field(default_factory=dict)
    app: Any = None
    #: topic name -> batch lane (filled by :meth:`batch_agent`, read by the consumer)
    lanes: dict[str, BatchLane] = field(default_factory=dict)
    #: output event type -> events sent by :meth:`emit` (for stats and metrics)
    emitted: dict[str, int] = field(default_factory=dict)
    _routes: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict, repr=False)

    def topic(self, name: str, **kwargs: Any) -> faust.TopicT:
        """The Faust topic of event type ``name`` carrying raw bytes (we decode ourselves)."""
        return self.app.topic(
            self.settings.topic(name),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            # the topic is created by `cxstream topics apply` with its retention and configs
            **kwargs,
        )

    def batch_agent(
        self,
        name: str,
        handler: BatchHandler,
        *,
        step: str,
        check: Check | None = None,
        expect: str | Iterable[str] | None = None,
    ) -> BatchLane:
        """Run ``handler(batch)`` on every fetched batch of event type ``name``'s topic.

        The fast path (see :mod:`streams.batching`): no Faust stream per event; the consumer
        passes each partition's fetched messages, decoded and checked (bad ones dead-lettered),
        and acks them once ``handler`` returned. Faust tables can be written in ``handler`` under
        :func:`streams.batching.acting_for`. Several processors may read the same event type:
        the topic's lane decodes once and calls each handler with the events its check passed.
        """
        expected = (expect,) if isinstance(expect, str) else tuple(expect or (name,))
        lane_handler = LaneHandler(step, handler, check)
        topic = self.topic(name)
        topic_name = self.settings.topic(name)
        lane = self.lanes.get(topic_name)
        if lane is None:
            # subscribing is what an agent would do for its topic; the lane replaces the agent
            self.app.topics.add(topic)
            decoder = BatchDecoder(self.codec, self.dead_letters, expect=expected, step=step)
            lane = self.lanes[topic_name] = BatchLane(decoder)
        lane.add(lane_handler, expected)
        return lane

    def after_each_fetch(self, hook: AfterFetch) -> None:
        """Await ``hook()`` after the lanes handled each fetch (see
        :func:`streams.batching.after_each_fetch`)."""
        after_each_fetch(self.app, hook)

    async def emit(
        self, name: str, record: Mapping[str, Any], *, key: str | None = None
    ) -> Awaitable[Any]:
        """Send an output event of type ``name``; returns its delivery future.

        Validated and encoded with the codec (a bad record raises ``ValidationError`` before
        anything is sent), keyed by the schema's partition key unless ``key`` is given. The
        event is durable before the batch's offsets commit even if the future is not awaited:
        Faust flushes its producer before every offset commit (see :mod:`streams.batching`);
        await the futures (:meth:`delivered`) when the next step depends on the broker's ack.
        """
        route = self._routes.get(name)
        if route is None:
            fields = tuple(self.codec.registry.latest(name).partition_key)
            route = self._routes[name] = (self.settings.topic(name), fields)
        topic, fields = route
        value = self.codec.encode(name, record)
        if key is None:
            key = partition_key(name, fields, record)
        future = await self.app.producer.send(
            topic, key.encode(), value, partition=None, timestamp=None, headers=None
        )
        self.emitted[name] = self.emitted.get(name, 0) + 1
        return future

    @staticmethod
    async def delivered(futures: Iterable[Awaitable[Any]]) -> None:
        """Wait until the broker acknowledged every future of :meth:`emit`."""
        pending = list(futures)
        if pending:
            await asyncio.gather(*pending)

    def batches(
        self,
        stream: Any,
        *,
        expect: str | Iterable[str],
        step: str,
        check: Check | None = None,
        size: int | None = None,
        within: float | None = None,
    ) -> AsyncIterator[list[InputEvent]]:
        """Decoded, checked batches of ``stream``; bad messages go to the dead letters."""
        decoder = BatchDecoder(self.codec, self.dead_letters, expect=expect, step=step, check=check)
        worker = self.settings.worker
        return batches(
            stream,
            decoder,
            size=size or worker.batch_size,
            within=within or worker.batch_timeout_seconds,
        )


class Processor(Protocol):
    """A processor module (or object) attaches its agents, tables and views to the app."""

    def register(self, app: faust.App, context: AppContext) -> None: ...


def create_app(
    settings: Settings,
    *,
    processors: Sequence[Processor] = (),
    codec: AvroCodec | None = None,
    **overrides: Any,
) -> faust.App:
    """A Faust app wired to ``settings`` with ``processors`` registered on it.

    ``overrides`` are passed to ``faust.App`` last (tests use them for short intervals).
    """
    import faust

    worker = settings.worker
    codec = codec or build_codec(settings)
    config: dict[str, Any] = {
        **faust_broker_settings(settings),
        "store": worker.store,
        "datadir": str(worker.data_dir / worker.app_id),
        "web_enabled": True,
        "web_host": worker.web_host,
        "web_port": worker.web_port,
        "web_bind": worker.web_host,
        "topic_partitions": settings.kafka.partitions,
        "topic_replication_factor": settings.kafka.replication_factor,
        "key_serializer": "raw",
        "value_serializer": "raw",
        # a new consumer group starts at the beginning of retained events, not at the end
        "consumer_auto_offset_reset": "earliest",
        # the dead-letter producer must take the largest input message plus its headers
        "producer_max_request_size": DLQ_MAX_MESSAGE_BYTES,
        "producer_acks": -1,
        # Faust's linger 0 and 16 KiB batches send a request per few messages: table writes
        # ran 2x faster with the SDK's linger and 1 MiB batches (bench sla, producer)
        "producer_linger": settings.kafka.producer_linger_ms / 1000,
        "producer_max_batch_size": 1 << 20,
        "producer_compression_type": _aiokafka_compression(settings),
        "broker_session_timeout": worker.session_timeout_seconds,
        "broker_commit_interval": worker.commit_interval_seconds,
        "broker_heartbeat_interval": min(3.0, worker.session_timeout_seconds / 3),
        "autodiscover": False,
        "version": 1,
    }
    config.update(overrides)
    # Faust creates only the last level of its datadir
    worker.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(worker.app_id, **config)
    setattr(app, FETCH_MAX_WAIT_ATTR, worker.fetch_max_wait_ms)
    setattr(app, FETCH_MIN_BYTES_ATTR, worker.fetch_min_bytes)
    if worker.gc_between_batches:
        _, middle_every, old_every = worker.gc_thresholds
        collector = BetweenBatchesCollector(
            worker.gc_between_batches, middle_every, old_every, worker.gc_thaw_seconds
        )
        setattr(app, GC_BETWEEN_BATCHES_ATTR, collector)
    counts = DeadLetterCounts()
    context = AppContext(
        settings=settings,
        codec=codec,
        dead_letters=DeadLetterQueue(settings.topic(DLQ_TOPIC), faust_sender(app), counts),
        app=app,
        lanes=install_batch_lanes(app),
    )
    context.stats["dead_letters"] = counts.snapshot
    context.stats["emitted"] = lambda: dict(context.emitted)
    context.stats["lanes"] = lambda: {
        topic: {"batches": lane.batches, "applied": lane.applied}
        for topic, lane in context.lanes.items()
    }
    for processor in processors:
        processor.register(app, context)
    _register_stats_view(app, context)
    from streams.metrics import register_metrics_view

    register_metrics_view(app, context)
    return app


def _register_stats_view(app: faust.App, context: AppContext) -> None:
    from faust.web import Request, Response, View

    @app.page("/v1/stats")
    class Stats(View):
        """Every processor's stats (and the dead-letter counts) of this worker."""

        async def get(self, request: Request) -> Response:
            return self.json({name: get() for name, get in context.stats.items()})


def _aiokafka_compression(settings: Settings) -> str | None:
    compression = settings.kafka.producer_compression
    return None if compression == "none" else compression
