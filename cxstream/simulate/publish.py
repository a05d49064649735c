"""Publishing a simulation: the generator's events through the producer SDK, paced and counted.

Time mapping. The generator lays events out over the simulated span (``--start`` +
``--duration``). By default they are published as fast as ``rate`` allows (``rate=0``: as fast
as the producer takes them), so a simulated day can be loaded in seconds. With ``speedup`` the
simulated clock is tied to the wall clock: ``speedup=1`` replays in real time, ``60`` plays a
simulated hour per wall minute. ``occurred_at`` always keeps the simulated time (so windows and
SLA clocks see the simulated day whatever the pace); a ``rate`` still caps bursts on top.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from cxstream.settings import Settings
from cxstream.simulate.config import SimulationConfig
from cxstream.simulate.labels import LabelSink
from cxstream.simulate.pacing import SimulatedClock, TokenBucket
from cxstream.simulate.progress import NoProgress, Progress
from cxstream.simulate.traffic import generate

#: how often the progress display is refreshed
_PROGRESS_EVERY_S = 0.25


class EventSink(Protocol):
    """What publishing needs: ``streams.producer.EventProducer`` is the real one."""

    def produce(self, name: str, record: Mapping[str, Any]) -> None: ...

    def flush(self, timeout: float | None = None) -> int: ...


class EncodeOnlySink:
    """``--dry-run``: validates and encodes each event as the producer would, sends none."""

    def __init__(self, codec: Any) -> None:
        self.codec = codec
        self.bytes = 0

    def produce(self, name: str, record: Mapping[str, Any]) -> None:
        self.bytes += len(self.codec.encode(name, record))

    def flush(self, timeout: float | None = None) -> int:
        return 0


@dataclass
class PublishReport:
    config: dict[str, Any]
    sent: int = 0
    per_type: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    #: simulated time of the newest event sent (epoch ms)
    last_sim_ms: int | None = None
    labels: int = 0
    rate_limit: float = 0.0
    speedup: float | None = None
    dry_run: bool = False
    interrupted: bool = False

    @property
    def events_per_second(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "per_type": dict(sorted(self.per_type.items())),
            "elapsed_s": round(self.elapsed_s, 3),
            "events_per_second": round(self.events_per_second, 1),
            "last_simulated_time": (
                None
                if self.last_sim_ms is None
                else datetime.fromtimestamp(self.last_sim_ms / 1000, UTC).isoformat()
            ),
            "labels": self.labels,
            "rate_limit": self.rate_limit,
            "speedup": self.speedup,
            "dry_run": self.dry_run,
            "interrupted": self.interrupted,
            "config": self.config,
        }


class _CountingLabels:
    def __init__(self, inner: LabelSink | None) -> None:
        self.inner = inner
        self.count = 0

    def write(self, label: Any) -> None:
        self.count += 1
        if self.inner is not None:
            self.inner.write(label)


def publish(
    config: SimulationConfig,
    sink: EventSink,
    *,
    rate: float = 0.0,
    speedup: float | None = None,
    labels: LabelSink | None = None,
    progress: Progress | None = None,
) -> PublishReport:
    """Generate ``config``'s events into ``sink``, paced by ``rate`` (events/s) and ``speedup``.

    Ctrl-C stops generating, but what was produced is still flushed and counted
    (``report.interrupted``); scenario labels of a cut-short run are written as incomplete.
    """
    display = progress or NoProgress()
    bucket = TokenBucket(rate) if rate > 0 else None
    pacer = SimulatedClock(speedup) if speedup is not None else None
    counted = _CountingLabels(labels)
    counts: defaultdict[str, int] = defaultdict(int)
    report = PublishReport(config=config.describe(), rate_limit=rate, speedup=speedup)
    sent = 0
    record: Mapping[str, Any] | None = None
    started = time.monotonic()
    next_update = started + _PROGRESS_EVERY_S
    events = generate(config, counted)
    try:
        for name, record in events:
            if pacer is not None:
                pacer.wait(record["occurred_at"])
            if bucket is not None:
                bucket.take()
            sink.produce(name, record)
            counts[name] += 1
            sent += 1
            if not sent & 1023 or bucket is not None or pacer is not None:
                now = time.monotonic()
                if now >= next_update:
                    display.update(sent, counts, record["occurred_at"], now - started)
                    next_update = now + _PROGRESS_EVERY_S
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        events.close()  # writes labels of scenarios cut short
        try:
            sink.flush()
        finally:
            report.elapsed_s = time.monotonic() - started
            report.sent = sent
            report.per_type = dict(counts)
            report.labels = counted.count
            report.last_sim_ms = None if record is None else int(record["occurred_at"])
            display.update(sent, counts, report.last_sim_ms or config.start_ms, report.elapsed_s)
            display.close()
    return report


def publish_to_kafka(
    settings: Settings,
    config: SimulationConfig,
    *,
    rate: float = 0.0,
    speedup: float | None = None,
    labels: LabelSink | None = None,
    progress: Progress | None = None,
) -> PublishReport:
    """:func:`publish` through ``streams.producer.EventProducer`` to ``settings.topic(name)``."""
    # imported here: confluent-kafka is only needed when something is really sent
    from streams.codec import build_codec
    from streams.producer import EventProducer

    with EventProducer(settings, build_codec(settings)) as producer:
        return publish(
            config, producer, rate=rate, speedup=speedup, labels=labels, progress=progress
        )


def dry_run(
    settings: Settings,
    config: SimulationConfig,
    *,
    rate: float = 0.0,
    speedup: float | None = None,
    labels: LabelSink | None = None,
    progress: Progress | None = None,
) -> PublishReport:
    """:func:`publish` into :class:`EncodeOnlySink` (no Kafka): generation + encode cost."""
    from streams.codec import build_codec

    report = publish(
        config,
        EncodeOnlySink(build_codec(settings)),
        rate=rate,
        speedup=speedup,
        labels=labels,
        progress=progress,
    )
    report.dry_run = True
    return report
