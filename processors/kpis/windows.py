"""Event-time KPI windows of one input partition: minute buckets, tumbling and rolling windows.

Why our own per-partition minute buckets and not Faust windowed tables: the batch lane applies
a whole fetched batch of one partition at once, outside Faust's per-event stream, so the
current-event context that windowed tables take their event time and changelog partition from
is not there; a rolling day refreshed every minute would also be a 1,440-way hopping table (one
write per event per hop). Instead every event is counted once, into the bucket of its
``occurred_at`` minute, and all windows are sums of buckets:

- tumbling minute ``[s, s + 1 min)``: one bucket;
- rolling hour / day ending at ``e`` (every ``publish_interval_seconds`` of event time): the
  buckets in ``[e - 1 h, e)`` / ``[e - 24 h, e)``; every partition publishes the same aligned
  windows, so partials of partitions sum to the global value.

Event time per partition: its stream time is the largest ``occurred_at`` seen; a window closes
(is published) when the stream time passed its end by ``lateness_seconds``. A late event whose
bucket is still kept (within the longest window) is counted and its minute window published
again with a higher ``revision``; rolling windows already published are not re-sent (the next
ones include it). Events older than that are dropped and counted as ``too_late``.

Idempotence: each bucket holds the highest input offset it counted (``offset``) in the same
value as its counts, so a replay after a crash (offsets not committed) skips what a bucket
already holds, exactly. Nothing here touches Faust: :meth:`SourcePartition.plan` returns the
table writes and measurements of a batch, the processor publishes and writes them, then
:meth:`SourcePartition.commit` makes them current.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cxstream.settings import Settings
from processors.kpis.definitions import StreamKpi
from streams.batching import InputEvent

MINUTE_MS = 60_000
WINDOW_MS: dict[str, int] = {"minute": MINUTE_MS, "hour": 60 * MINUTE_MS, "day": 1440 * MINUTE_MS}
META = "meta"


def minute_of(timestamp_ms: int) -> int:
    """Start of the minute (epoch ms, UTC) that ``timestamp_ms`` falls in."""
    return timestamp_ms - timestamp_ms % MINUTE_MS


@dataclass(frozen=True)
class WindowConfig:
    windows: tuple[str, ...] = ("minute", "hour", "day")
    lateness_ms: int = 60_000
    step_ms: int = 60_000
    max_catchup: int = 60

    @classmethod
    def from_settings(cls, settings: Settings) -> WindowConfig:
        kpi = settings.kpi
        return cls(
            windows=tuple(kpi.windows),
            lateness_ms=round(kpi.lateness_seconds * 1000),
            step_ms=kpi.publish_interval_seconds * 1000,
            max_catchup=kpi.max_catchup_windows,
        )

    @property
    def retention_ms(self) -> int:
        """How far behind the closed edge buckets are kept: the longest window."""
        return max([MINUTE_MS, *(WINDOW_MS[w] for w in self.windows)])


@dataclass(frozen=True)
class Measurement:
    """Counts of one KPI over one window of one input partition (a partial of the KPI)."""

    kpi: str
    window: str
    window_start: int
    numerator: int
    denominator: int
    partition: int
    #: highest input offset counted (-1: none); grows when a window is published again
    revision: int

    @property
    def window_end(self) -> int:
        return self.window_start + WINDOW_MS[self.window]


class Seen(Protocol):
    """Event ids already applied (:class:`streams.batching.SeenEvents`)."""

    def first_offset(self, partition: int, event_id: str) -> int | None: ...

    def note(self, partition: int, event_id: str, offset: int) -> None: ...


@dataclass
class Plan:
    """What one batch changes: table writes (``None`` deletes) and measurements to publish."""

    writes: dict[str, Any] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    applied: int = 0
    replays: int = 0
    duplicates: int = 0
    too_late: int = 0


def new_bucket() -> dict[str, Any]:
    return {"offset": -1, "counts": {}}


def new_meta() -> dict[str, Any]:
    # watermark: stream time; closed: minute windows published up to (exclusive end);
    # published: end of the last rolling window published
    return {"watermark": None, "closed": None, "published": None}


class SourcePartition:
    """The minute buckets of one input partition of one event type, and what was published."""

    def __init__(
        self, partition: int, kpis: Sequence[StreamKpi], config: WindowConfig = WindowConfig()
    ) -> None:
        self.partition = partition
        self.kpis = tuple(kpis)
        self.config = config
        self.buckets: dict[int, dict[str, Any]] = {}
        self.meta: dict[str, Any] = new_meta()

    def key(self, start: int | str) -> str:
        return f"{self.partition}:{start}"

    def load(self, suffix: str, value: Mapping[str, Any]) -> None:
        """Take one stored entry (table key ``<partition>:<suffix>``) after recovery."""
        if suffix == META:
            self.meta = dict(value)
        else:
            self.buckets[int(suffix)] = dict(value)

    def plan(self, items: Sequence[InputEvent], seen: Seen | None = None) -> Plan:
        """Count ``items`` (events of this partition, in offset order) and close windows."""
        plan = Plan()
        touched: dict[int, dict[str, Any]] = {}
        meta = dict(self.meta)
        closed: int | None = meta["closed"]
        horizon = None if closed is None else closed - self.config.retention_ms
        watermark: int | None = meta["watermark"]
        partition = self.partition
        for item in items:
            record = item.record
            occurred = int(record["occurred_at"])
            if watermark is None or occurred > watermark:
                watermark = occurred
            start = minute_of(occurred)
            if horizon is not None and start < horizon:
                plan.too_late += 1
                continue
            bucket = touched.get(start)
            if bucket is None:
                stored = self.buckets.get(start)
                bucket = new_bucket() if stored is None else _copy_bucket(stored)
            if item.offset <= bucket["offset"]:
                plan.replays += 1  # counted before a crash, offsets not committed then
                continue
            event_id = record["event_id"]
            first = None if seen is None else seen.first_offset(partition, event_id)
            if first is not None and first != item.offset:
                plan.duplicates += 1  # the same event re-sent under another offset
                continue
            counts = bucket["counts"]
            for kpi in self.kpis:
                measured = kpi.measure(record)
                if measured is not None:
                    pair = counts.setdefault(kpi.key, [0, 0])
                    pair[0] += measured[0]
                    pair[1] += measured[1]
            bucket["offset"] = item.offset
            touched[start] = bucket
            plan.applied += 1
            if seen is not None and first is None:
                seen.note(partition, event_id, item.offset)
        meta["watermark"] = watermark
        for start, bucket in touched.items():
            plan.writes[self.key(start)] = bucket
        if watermark is not None:
            self._close(plan, meta, touched, watermark)
        plan.writes[self.key(META)] = meta
        return plan

    def commit(self, plan: Plan) -> None:
        """Make a planned batch current (after its writes and measurements are out)."""
        prefix = f"{self.partition}:"
        for key, value in plan.writes.items():
            suffix = key[len(prefix) :]
            if suffix == META:
                self.meta = value
            elif value is None:
                self.buckets.pop(int(suffix), None)
            else:
                self.buckets[int(suffix)] = value

    # -- closing windows --------------------------------------------------------------------------

    def _close(
        self,
        plan: Plan,
        meta: dict[str, Any],
        touched: Mapping[int, dict[str, Any]],
        watermark: int,
    ) -> None:
        config = self.config
        buckets = {**self.buckets, **touched}
        if not buckets:
            return
        edge = minute_of(watermark - config.lateness_ms)
        old_closed: int | None = meta["closed"]
        closed = min(buckets) if old_closed is None else old_closed
        if meta["published"] is None:
            meta["published"] = closed - closed % config.step_ms
        if "minute" in config.windows:
            # late events in minutes already published: publish those minutes again
            if old_closed is not None:
                for start in sorted(s for s in touched if s < old_closed):
                    plan.measurements.extend(self._minute(start, buckets.get(start)))
            starts = range(max(closed, edge - config.max_catchup * MINUTE_MS), edge, MINUTE_MS)
            for start in starts:
                plan.measurements.extend(self._minute(start, buckets.get(start)))
        rolling = [w for w in config.windows if w != "minute"]
        published: int = meta["published"]
        if rolling and edge > published:
            first = max(
                published + config.step_ms, edge - (config.max_catchup - 1) * config.step_ms
            )
            first += -first % config.step_ms
            ends = range(first, edge + 1, config.step_ms)
            if ends:
                plan.measurements.extend(self._rolling(buckets, rolling, ends))
        meta["published"] = max(published, edge - edge % config.step_ms)
        meta["closed"] = max(closed, edge)
        # keep what the longest window ending at the closed edge still needs
        floor = meta["closed"] - config.retention_ms
        for start in buckets:
            if start < floor:
                plan.writes[self.key(start)] = None

    def _minute(self, start: int, bucket: Mapping[str, Any] | None) -> list[Measurement]:
        counts = {} if bucket is None else bucket["counts"]
        revision = -1 if bucket is None else bucket["offset"]
        out = []
        for kpi in self.kpis:
            numerator, denominator = counts.get(kpi.key, (0, 0))
            out.append(
                Measurement(
                    kpi.key, "minute", start, numerator, denominator, self.partition, revision
                )
            )
        return out

    def _rolling(
        self, buckets: Mapping[int, Mapping[str, Any]], windows: Iterable[str], ends: range
    ) -> list[Measurement]:
        # columns over the sorted buckets: each window is a slice, summed in C
        starts = sorted(buckets)
        offsets = [buckets[s]["offset"] for s in starts]
        columns = {}
        for kpi in self.kpis:
            pairs = [buckets[s]["counts"].get(kpi.key, (0, 0)) for s in starts]
            columns[kpi.key] = ([p[0] for p in pairs], [p[1] for p in pairs])
        out = []
        for window in windows:
            width = WINDOW_MS[window]
            for end in ends:
                low = bisect.bisect_left(starts, end - width)
                high = bisect.bisect_left(starts, end)
                revision = max(offsets[low:high], default=-1)
                for kpi in self.kpis:
                    numerators, denominators = columns[kpi.key]
                    out.append(
                        Measurement(
                            kpi.key,
                            window,
                            end - width,
                            sum(numerators[low:high]),
                            sum(denominators[low:high]),
                            self.partition,
                            revision,
                        )
                    )
        return out


def _copy_bucket(bucket: Mapping[str, Any]) -> dict[str, Any]:
    # a copy: a batch that fails half-way must leave the current buckets as they were
    return {"offset": bucket["offset"], "counts": {k: list(v) for k, v in bucket["counts"].items()}}
