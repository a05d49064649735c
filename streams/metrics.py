"""Prometheus metrics of a Faust worker: ``GET /metrics`` on the worker's web server.

``register_metrics_view(app, context)`` (called by :func:`streams.app.create_app`) adds the view.
Everything but the two histograms is read from the worker's own state at scrape time, so the
hot path pays nothing for it:

- ``cxstream_worker_events_in_total{topic}`` / ``_batches_total``: applied by the batch lanes;
- ``cxstream_worker_events_out_total{event_type}``: output events sent with ``context.emit``;
- ``cxstream_worker_dead_letters_total{reason}`` and ``..._by_topic_total{topic}``;
- ``cxstream_worker_consumer_lag{topic,partition}``: highwater - committed offset of each
  assigned partition (before the first commit: highwater - next offset to read), with
  ``cxstream_worker_consumer_highwater`` and ``..._committed_offset``;
- ``cxstream_worker_stat{processor,path}``: every numeric leaf of ``context.stats`` (what the
  processors report at ``/v1/stats``), ``path`` the dotted key inside the processor's stats;
- histograms ``cxstream_worker_batch_seconds{topic}`` (one lane batch: decode, handlers, acks)
  and ``cxstream_worker_event_delay_seconds{topic}`` (broker timestamp of a batch's oldest
  event to the end of its processing), observed once per batch by wrapping each lane's ``run``.

Each app has its own ``CollectorRegistry``: several apps in one process (tests) do not clash.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    import faust

    from streams.app import AppContext
    from streams.batching import BatchLane

log = logging.getLogger(__name__)

#: processing time of one batch (seconds)
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: produce -> processed (seconds)
DELAY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: the text format generate_latest writes (aiohttp refuses a charset inside content_type)
CONTENT_TYPE = "text/plain; version=0.0.4"
#: stats already exported under their own names
_OWN_STATS = frozenset({"dead_letters", "emitted"})


class WorkerMetrics:
    """The worker's metrics: two histograms fed per batch, the rest collected at scrape."""

    def __init__(self, app: Any, context: AppContext) -> None:
        self.app = app
        self.context = context
        self.registry = CollectorRegistry()
        self.batch_seconds = Histogram(
            "cxstream_worker_batch_seconds",
            "Processing time of one fetched batch of one partition (decode, handlers, acks).",
            ["topic"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.event_delay = Histogram(
            "cxstream_worker_event_delay_seconds",
            "Broker timestamp of a batch's oldest event to the end of its processing.",
            ["topic"],
            buckets=DELAY_BUCKETS,
            registry=self.registry,
        )
        self._timed: set[int] = set()
        self.registry.register(_ScrapeCollector(self))

    def instrument_lanes(self) -> None:
        """Time every lane's ``run`` (lanes added since the last call included)."""
        for topic, lane in self.context.lanes.items():
            if id(lane) not in self._timed:
                self._timed.add(id(lane))
                # an instance attribute shadows the method: the consumer calls lane.run(...)
                lane.run = self._timed_run(topic, lane)  # type: ignore[method-assign, assignment]

    def _timed_run(
        self, topic: str, lane: BatchLane
    ) -> Callable[[Any, list[Any], Callable[[], bool] | None], Awaitable[bool]]:
        run = lane.run
        batch_seconds = self.batch_seconds.labels(topic)
        event_delay = self.event_delay.labels(topic)

        async def timed(
            consumer: Any, messages: list[Any], current: Callable[[], bool] | None = None
        ) -> bool:
            started = time.perf_counter()
            done = await run(consumer, messages, current)
            batch_seconds.observe(time.perf_counter() - started)
            stamps = [m.timestamp for m in messages if m.timestamp]
            if stamps:
                event_delay.observe(max(0.0, time.time() - min(stamps)))
            return done

        return timed

    def render(self) -> bytes:
        self.instrument_lanes()
        return generate_latest(self.registry)


class _ScrapeCollector:
    """Reads counters, lag and processor stats from the worker when scraped."""

    def __init__(self, owner: WorkerMetrics) -> None:
        self.owner = owner

    def describe(self) -> list[Metric]:
        return []  # collected only at scrape time (the registry then skips a dry run)

    def collect(self) -> Iterator[Metric]:
        context = self.owner.context
        events_in = CounterMetricFamily(
            "cxstream_worker_events_in", "Events applied by the batch lanes.", labels=["topic"]
        )
        batches = CounterMetricFamily(
            "cxstream_worker_batches", "Batches processed by the batch lanes.", labels=["topic"]
        )
        for topic, lane in sorted(context.lanes.items()):
            events_in.add_metric([topic], lane.applied)
            batches.add_metric([topic], lane.batches)
        yield events_in
        yield batches

        events_out = CounterMetricFamily(
            "cxstream_worker_events_out",
            "Output events sent by the processors (context.emit), by event type.",
            labels=["event_type", "topic"],
        )
        emitted: Mapping[str, int] = getattr(context, "emitted", {})
        for name, count in sorted(emitted.items()):
            events_out.add_metric([name, context.settings.topic(name)], count)
        yield events_out

        counts = context.dead_letters.counts
        by_reason = CounterMetricFamily(
            "cxstream_worker_dead_letters",
            "Messages sent to the dead-letter topic, by reason.",
            labels=["reason"],
        )
        for reason, n in sorted(counts.by_reason.items()):
            by_reason.add_metric([reason], n)
        yield by_reason
        by_topic = CounterMetricFamily(
            "cxstream_worker_dead_letters_by_topic",
            "Messages sent to the dead-letter topic, by source topic.",
            labels=["topic"],
        )
        for topic, n in sorted(counts.by_topic.items()):
            by_topic.add_metric([topic], n)
        yield by_topic

        yield from _lag(self.owner.app)
        yield _stats(context.stats)


def _lag(app: Any) -> Iterator[Metric]:
    lag = GaugeMetricFamily(
        "cxstream_worker_consumer_lag",
        "Messages behind the partition's end: highwater - committed offset.",
        labels=["topic", "partition"],
    )
    highwater = GaugeMetricFamily(
        "cxstream_worker_consumer_highwater",
        "Offset of the next message to be written to the partition (as last fetched).",
        labels=["topic", "partition"],
    )
    committed_g = GaugeMetricFamily(
        "cxstream_worker_consumer_committed_offset",
        "Next offset to read after a restart, as committed by this worker.",
        labels=["topic", "partition"],
    )
    assigned = GaugeMetricFamily(
        "cxstream_worker_assigned_partitions", "Partitions assigned to this worker."
    )
    consumer = _consumer(app)
    tps: list[Any] = []
    if consumer is not None:
        try:
            tps = sorted(consumer.assignment())
        except Exception:  # not started or between generations: no partitions to report
            tps = []
    assigned.add_metric([], len(tps))
    for tp in tps:
        labels = [tp.topic, str(tp.partition)]
        try:
            end = consumer.highwater(tp)
        except Exception:  # no fetch for it yet
            continue
        if end is None:
            continue
        # Faust keeps both in memory (faust/transport/consumer.py): no broker round trip here
        committed = consumer._committed_offset.get(tp)
        read = consumer._read_offset.get(tp)
        position = committed if committed is not None else (None if read is None else read + 1)
        highwater.add_metric(labels, end)
        if committed is not None:
            committed_g.add_metric(labels, committed)
        if position is not None:
            lag.add_metric(labels, max(0, end - position))
    yield lag
    yield highwater
    yield committed_g
    yield assigned


def _consumer(app: Any) -> Any:
    # not app.consumer: that property creates a consumer when there is none yet
    return getattr(app, "_consumer", None)


def _stats(stats: Mapping[str, Callable[[], Any]]) -> Metric:
    family = GaugeMetricFamily(
        "cxstream_worker_stat",
        "Numeric leaves of the processors' stats (/v1/stats), by processor and dotted path.",
        labels=["processor", "path"],
    )
    for processor, get in sorted(stats.items()):
        if processor in _OWN_STATS:
            continue
        try:
            value = get() if callable(get) else get
        except Exception as exc:  # a broken stats callable must not break the scrape
            log.warning("metrics: stats of %s failed: %r", processor, exc)
            continue
        for path, number in _numeric_leaves(value, ""):
            family.add_metric([processor, path], number)
    return family


def _numeric_leaves(value: Any, prefix: str) -> Iterable[tuple[str, float]]:
    if isinstance(value, (int, float)):  # bools included: flags count as 0/1
        yield prefix, float(value)
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            yield from _numeric_leaves(inner, f"{prefix}.{key}" if prefix else str(key))


#: app -> its metrics, so that registering twice (create_app and a caller) adds one view
_REGISTERED: weakref.WeakKeyDictionary[Any, WorkerMetrics] = weakref.WeakKeyDictionary()


def register_metrics_view(app: faust.App, context: AppContext) -> WorkerMetrics:
    """Add ``GET /metrics`` (Prometheus text format) to the worker's web server; idempotent."""
    from faust.web import Request, Response, View

    existing = _REGISTERED.get(app)
    if existing is not None:
        existing.instrument_lanes()
        return existing
    metrics = _REGISTERED[app] = WorkerMetrics(app, context)
    metrics.instrument_lanes()

    @app.page("/metrics")
    class Metrics(View):
        """Prometheus metrics of this worker."""

        async def get(self, request: Request) -> Response:
            return self.bytes(metrics.render(), content_type=CONTENT_TYPE)

    return metrics
