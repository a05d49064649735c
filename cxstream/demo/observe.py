"""What the demo's live view shows, read from the real services on every refresh."""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from cxstream.demo.children import OnCall
from cxstream.demo.namespace import Namespace
from cxstream.settings import Settings


@dataclass
class Snapshot:
    produced: dict[str, int] = field(default_factory=dict)
    lag: dict[str, int | None] = field(default_factory=dict)
    #: the worker's ``GET /v1/stats`` (every processor's stats), ``None`` until it answers
    worker: dict[str, Any] | None = None
    clickhouse: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    #: (title, value text, target text, meets target or None) per KPI of the plan
    kpis: list[tuple[str, str, str, bool | None]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    alerts_received: int = 0
    flags: list[tuple[Any, ...]] = field(default_factory=list)
    profiles_in_redis: int = 0
    #: ``GET /v1/customers/{id}/profile`` through the API: latencies (ms) of the last probe
    api_latency_ms: list[float] = field(default_factory=list)
    api_sources: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    at: float = field(default_factory=time.time)

    def events_per_s(self, previous: Snapshot | None) -> float | None:
        if previous is None or self.at <= previous.at:
            return None
        return (sum(self.produced.values()) - sum(previous.produced.values())) / (
            self.at - previous.at
        )


def consumer_groups(settings: Settings, ns: Namespace) -> dict[str, tuple[str, list[str]]]:
    """label -> (consumer group, topics it consumes) of the platform's consumers.

    The sink consumes the event topics only: internal topics (profile links, security state)
    are never its to commit, so counting them would keep its lag above 0 for ever.
    """
    from streams.topics import INPUT_EVENTS, OUTPUT_EVENTS

    events = [settings.topic(name) for name in (*INPUT_EVENTS, *OUTPUT_EVENTS)]
    return {
        "worker": (ns.worker_group, [settings.topic(name) for name in INPUT_EVENTS]),
        "sink": (ns.sink_group, events),
        "notifier": (ns.notifier_group, [settings.topic("alert"), settings.topic("security_flag")]),
    }


class Observer:
    """Reads Kafka watermarks and group offsets, worker stats, ClickHouse, Redis, the API."""

    def __init__(
        self,
        settings: Settings,
        groups: dict[str, tuple[str, list[str]]],
        oncall: OnCall,
        api_url: str | None,
    ) -> None:
        """``groups``: label -> (consumer group, topics it must have consumed); ``api_url``:
        the HTTP API to probe (``None``: no API runs)."""
        from confluent_kafka import Consumer
        from confluent_kafka.admin import AdminClient

        from cxstream.redis_connection import sync_redis
        from streams.kafka_config import confluent_config
        from streams.topics import platform_topics

        self.settings = settings
        self.groups = groups
        self.oncall = oncall
        self.api_url = api_url
        keys = list(settings.api.keys.values())
        self.api_key = keys[0].get_secret_value() if keys else ""
        base = confluent_config(settings)
        self.admin = AdminClient(base)
        self.consumer = Consumer({**base, "group.id": "cxstream-demo-observer"})
        self.topics = [spec.name for spec in platform_topics(settings)]
        self.dlq_topic = settings.topic("dlq")
        self.redis = sync_redis(settings)
        self._backend: Any = None
        self._slow_at = 0.0
        self._slow: dict[str, Any] = {}

    @property
    def backend(self) -> Any:
        from sinks.clickhouse.backend import make_backend

        if self._backend is None:
            self._backend = make_backend(self.settings)
        return self._backend

    def high_watermarks(self, topic: str) -> dict[int, int]:
        from confluent_kafka import TopicPartition

        meta = self.consumer.list_topics(topic, timeout=5)
        marks = {}
        for partition in meta.topics[topic].partitions:
            _, high = self.consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=5
            )
            marks[partition] = high
        return marks

    def lag(self, group: str, topics: list[str], marks: dict[str, dict[int, int]]) -> int | None:
        """Messages of ``topics`` the group has not committed yet (``None``: no commit yet)."""
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

        wanted = [TopicPartition(t, p) for t in topics if t in marks for p in marks[t]]
        if not wanted:
            return 0
        try:
            future = self.admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group, wanted)]
            )[group]
            committed = future.result(timeout=5).topic_partitions
        except Exception:  # a group that has not committed yet has no answer
            return None
        lag = 0
        for tp in committed:
            high = marks[tp.topic][tp.partition]
            lag += high - (tp.offset if tp.offset >= 0 else 0)
        return lag

    def snapshot(self, *, full: bool = False) -> Snapshot:
        """What the view shows now; ``full`` also refreshes the slow parts (KPIs, flags, API)."""
        import httpx

        snap = Snapshot()
        marks = {}
        for topic in self.topics:
            try:
                marks[topic] = self.high_watermarks(topic)
            except Exception as exc:
                snap.errors.append(f"{topic}: {exc}")
                continue
            total = sum(marks[topic].values())
            if topic == self.dlq_topic:
                snap.dead_letters = total
            elif total:
                snap.produced[topic] = total
        for label, (group, topics) in self.groups.items():
            snap.lag[label] = self.lag(group, topics, marks)
        url = f"http://127.0.0.1:{self.settings.worker.web_port}/v1/stats"
        try:
            snap.worker = httpx.get(url, timeout=2).json()
        except Exception as exc:
            snap.errors.append(f"worker view: {type(exc).__name__}")
        try:
            snap.clickhouse = self.clickhouse_counts()
        except Exception as exc:
            snap.errors.append(f"clickhouse: {exc}")
        deliveries = self.oncall.deliveries()
        snap.alerts_received = len(deliveries)
        snap.alerts = deliveries[-5:]
        with contextlib.suppress(Exception):
            snap.profiles_in_redis = sum(
                1 for _ in self.redis.scan_iter(match=self.profile_pattern, count=1000)
            )
        if full or time.monotonic() - self._slow_at > 5:
            self._slow_at = time.monotonic()
            self._slow = self.slow_parts(snap)
        snap.kpis = self._slow.get("kpis", [])
        snap.flags = self._slow.get("flags", [])
        snap.api_latency_ms = self._slow.get("api_latency_ms", [])
        snap.api_sources = self._slow.get("api_sources", {})
        return snap

    @property
    def profile_pattern(self) -> str:
        return f"{self.settings.kafka.topic_prefix}:profile:*"

    def clickhouse_counts(self) -> dict[str, int]:
        from sinks.clickhouse.tables import event_tables

        counts = {}
        db = self.backend.database
        for table in event_tables():
            rows = self.backend.query(f"SELECT count() FROM {db}.{table.name} FINAL")
            if rows and rows[0][0]:
                counts[table.event] = int(rows[0][0])
        return counts

    def slow_parts(self, snap: Snapshot) -> dict[str, Any]:
        """KPIs, flags and API probes: refreshed every few seconds, not every second."""
        parts: dict[str, Any] = {}
        try:
            parts["kpis"] = self.kpis()
        except Exception as exc:
            snap.errors.append(f"kpis: {type(exc).__name__}: {str(exc)[:120]}")
        try:
            db = self.backend.database
            parts["flags"] = self.backend.query(
                f"SELECT rule, severity, principal_type, count() AS n FROM {db}.security_flag "
                "FINAL GROUP BY rule, severity, principal_type ORDER BY n DESC LIMIT 6"
            )
        except Exception as exc:
            snap.errors.append(f"flags: {type(exc).__name__}")
        try:
            if self.api_url is not None:
                parts.update(self.probe_api())
        except Exception as exc:
            snap.errors.append(f"api: {type(exc).__name__}")
        return parts

    def data_range(self) -> tuple[int, int] | None:
        """Event-time range of the run's interactions (epoch ms), what the KPIs cover."""
        db = self.backend.database
        rows = self.backend.query(
            f"SELECT toUInt64(min(occurred_at)), toUInt64(max(occurred_at)), count() "
            f"FROM {db}.channel_interaction"
        )
        if not rows or not rows[0][2]:
            return None
        return int(rows[0][0]) * 1000, int(rows[0][1]) * 1000 + 999

    def kpis(self) -> list[tuple[str, str, str, bool | None]]:
        from dashboards.macros import TimeRange
        from dashboards.scorecard import scorecard_values

        span = self.data_range()
        if span is None:
            return []
        values = scorecard_values(self.backend, TimeRange(*span))
        return [(v.kpi.title, v.text, v.kpi.target_text, v.meets_target) for v in values]

    def sample_customers(self, n: int) -> list[str]:
        prefix = self.profile_pattern[:-1]
        out = []
        for key in self.redis.scan_iter(match=self.profile_pattern, count=200):
            out.append(key.decode()[len(prefix) :])
            if len(out) >= n:
                break
        return out

    def probe_api(self, n: int = 20) -> dict[str, Any]:
        import httpx

        latencies: list[float] = []
        sources: dict[str, int] = {}
        headers = {"X-API-Key": self.api_key}
        assert self.api_url is not None  # slow_parts probes only when an API runs
        with httpx.Client(base_url=self.api_url, headers=headers, timeout=5) as client:
            for customer_id in self.sample_customers(n):
                began = time.perf_counter()
                response = client.get(f"/v1/customers/{customer_id}/profile")
                latencies.append((time.perf_counter() - began) * 1000)
                source = response.headers.get("X-Profile-Source", str(response.status_code))
                sources[source] = sources.get(source, 0) + 1
        return {"api_latency_ms": latencies, "api_sources": sources}

    def close(self) -> None:
        self.consumer.close()
        self.redis.close()
        if self._backend is not None:
            self._backend.close()


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[min(98, int(q) - 1)]
