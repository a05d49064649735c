"""The live part of ``cxstream bench pipeline``: delays while producing at a fixed rate.

With the whole platform running (worker, sink, notifier, receiver), ``rate`` events/s are
produced for ``duration`` s: the pre-generated events again (fresh event ids, ``occurred_at``
= now) with three kinds of probes mixed in:

- every ``sample_every``-th event is an interaction of a fresh probe customer: produce ->
  profile in Redis (the first poll, every ``redis_poll_ms``, that finds the hash with
  ``version`` >= 1) and produce -> row queryable in ClickHouse (``channel_interaction``, polled
  every ``clickhouse_poll_ms`` as ``cxstream bench sink`` does);
- ``sla_items`` feedback items, produced first, submitted so long ago that their SLA warnings
  fall due spread over the run: alert ``fired_at - deadline_at`` (from the alert topic) and
  receiver arrival - ``deadline_at`` (the on-call receiver's stamp);
- ``bursts`` brute-force bursts (``security.brute_force_failures`` failed logins of a fresh
  customer, back to back) spread over the run: Kafka timestamp of the flag - produce time of
  the burst's completing event.

Send times are taken just before ``produce``; all clocks are this machine's.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cxstream.bench.pipeline_stats import percentiles_ms
from cxstream.errors import ServiceError
from cxstream.settings import Settings

HOUR_MS = 3_600_000


@dataclass
class Plan:
    """What to produce, in order, and which slots are probes."""

    #: (event type, record, probe kind or "")
    items: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    #: feedback id -> warning due at (epoch ms)
    sla_due: dict[str, int] = field(default_factory=dict)


def _interaction(customer: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": 0,
        "customer_id": customer,
        "anonymous_id": None,
        "channel": "app",
        "action": "information_request",
        "topic": "cards",
        "session_id": None,
        "duration_ms": None,
        "resolved": None,
        "search_query": None,
        "campaign_id": None,
        "locale": None,
        "source": "bench",
    }


def _feedback(feedback_id: str, customer: str, submitted_at: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": submitted_at,
        "customer_id": customer,
        "feedback_id": feedback_id,
        "channel": "app",
        "category": "fees",
        "severity": "medium",
        "department": "customer_service",
        "text": None,
        "contact_email": None,
        "contact_phone": None,
        "source": "bench",
    }


def _login_failure(customer: str, burst: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": 0,
        "principal_id": customer,
        "principal_type": "customer",
        "action": "login_failure",
        "target_customer_id": None,
        "record_count": 0,
        "staff_team": None,
        "ip": f"10.{burst // 250 % 250}.{burst % 250}.7",
        "device_id": f"bench-device-{burst}",
        "user_agent": "bench",
        "geo_country": "CN",
        "geo_city": "Shanghai",
        "geo_lat": 31.23,
        "geo_lon": 121.47,
        "auth_method": "password",
        "amount_minor": None,
        "source": "bench",
    }


def build_plan(
    settings: Settings,
    filler: list[tuple[str, dict[str, Any]]],
    *,
    tag: str,
    count: int,
    sample_every: int,
    sla_items: int,
    bursts: int,
    start_ms: int,
    duration_s: float,
) -> Plan:
    """The SLA items, then ``count`` slots: a slot is a burst (spread evenly), a probe (every
    ``sample_every``-th) or the next filler event."""
    plan = Plan()
    sla = settings.sla
    warn_ms = round(sla.warning_fraction * sla.response_hours * HOUR_MS)
    lead_ms = 5_000  # the first warning falls due 5 s in, after the items are in Kafka
    span_ms = max(1, int(duration_s * 1000) - lead_ms)
    for j in range(sla_items):
        due = start_ms + lead_ms + (j * span_ms) // max(1, sla_items)
        feedback_id = f"{tag}-fb-{j}"
        plan.sla_due[feedback_id] = due
        record = _feedback(feedback_id, f"{tag}-sla-{j}", due - warn_ms)
        plan.items.append(("feedback_submitted", record, "sla"))
    failures = settings.security.brute_force_failures
    burst_at = {int(count * (k + 0.5) / bursts): k for k in range(bursts)} if bursts else {}
    i = 0
    for slot in range(count):
        k = burst_at.get(slot)
        if k is not None:
            customer = f"{tag}-bf-{k}"
            for n in range(failures):
                kind = "burst_last" if n == failures - 1 else "burst"
                plan.items.append(("access_event", _login_failure(customer, k), kind))
        elif slot % sample_every == 0:
            plan.items.append(("channel_interaction", _interaction(f"{tag}-p-{slot}"), "probe"))
        else:
            name, record = filler[i % len(filler)]
            i += 1
            plan.items.append((name, dict(record, event_id=str(uuid.uuid4())), ""))
    return plan


class RedisWatch:
    """Polls the profile hashes of probe customers; notes the first poll that finds each."""

    def __init__(self, settings: Settings, interval: float) -> None:
        from cxstream.redis_connection import sync_redis
        from processors.profiles.mirror import profile_key

        self.redis = sync_redis(settings)
        self.key: Callable[[str], str] = lambda cid: profile_key(settings, cid)
        self.interval = interval
        self.tracked: list[tuple[str, float]] = []
        self.seen: dict[str, float] = {}
        self.errors: list[BaseException] = []
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                pending = [c for c, _ in self.tracked[: len(self.tracked)] if c not in self.seen]
                if pending:
                    pipe = self.redis.pipeline(transaction=False)
                    for cid in pending:
                        pipe.hget(self.key(cid), "version")
                    polled = time.perf_counter()
                    for cid, version in zip(pending, pipe.execute(), strict=True):
                        if version is not None and int(version) >= 1:
                            self.seen[cid] = polled
                self.stop.wait(self.interval)
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            self.redis.close()


def read_topic(settings: Settings, name: str, timeout: float = 20) -> list[tuple[dict, int]]:
    """Every record of event type ``name``'s topic with its Kafka timestamp (ms)."""
    from confluent_kafka import Consumer, KafkaError

    from streams.codec import build_codec
    from streams.kafka_config import confluent_config

    codec = build_codec(settings)
    consumer = Consumer(
        confluent_config(
            settings,
            **{
                "group.id": f"{settings.kafka.topic_prefix}-read-{uuid.uuid4().hex[:6]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            },
        )
    )
    consumer.subscribe([settings.topic(name)])
    out: list[tuple[dict, int]] = []
    eof: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(eof) < settings.kafka.partitions and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        eof.add(message.partition() or 0)
                    continue
                value = message.value()
                if value:
                    out.append((codec.decode(value).record, message.timestamp()[1]))
    finally:
        consumer.close()
    return out


def received(path: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with contextlib.suppress(OSError):
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


def live_figures(
    settings: Settings,
    filler: list[tuple[str, dict[str, Any]]],
    options: dict[str, Any],
    *,
    tag: str,
    received_path: Any,
    alive: Callable[[], None],
) -> dict[str, Any]:
    """Produce at the fixed rate with probes; the delays (module doc). ``alive`` raises if a
    child of the platform died."""
    from cxstream.bench.sink import _Visibility
    from sinks.clickhouse.backend import ServerBackend
    from streams.codec import build_codec
    from streams.producer import EventProducer

    rate = float(options.get("rate", 1000))
    duration = float(options.get("duration", 60))
    every = max(1, int(options.get("sample_every", 50)))
    drain = float(options.get("drain_seconds", 60))
    count = int(rate * duration)
    start_ms = int(time.time() * 1000)
    plan = build_plan(
        settings,
        filler,
        tag=tag,
        count=count,
        sample_every=every,
        sla_items=int(options.get("sla_items", 200)),
        bursts=int(options.get("bursts", 20)),
        start_ms=start_ms,
        duration_s=duration,
    )
    backend = ServerBackend(settings)
    visible = _Visibility(
        backend,
        f"{settings.clickhouse.database}.channel_interaction",
        float(options.get("clickhouse_poll_ms", 100)) / 1000,
    )
    redis = RedisWatch(settings, float(options.get("redis_poll_ms", 20)) / 1000)
    threads = [
        threading.Thread(target=visible.run, name="bench-ch-visibility", daemon=True),
        threading.Thread(target=redis.run, name="bench-redis-visibility", daemon=True),
    ]
    burst_sent: dict[str, int] = {}
    try:
        for thread in threads:
            thread.start()
        with EventProducer(settings, build_codec(settings)) as producer:
            produce, now = producer.produce, time.perf_counter
            sent, behind, total, ticks = 0, 0.0, len(plan.items), 0
            first = now()
            next_tick = first
            while sent < total:
                due = min(total, int((now() - first) * rate) + 1)
                behind = max(behind, (due - sent) / rate)
                while sent < due:
                    name, record, kind = plan.items[sent]
                    if kind != "sla":
                        record["occurred_at"] = int(time.time() * 1000)
                    if kind == "probe":
                        stamp = now()
                        produce(name, record)
                        visible.tracked.append((record["event_id"], stamp))
                        redis.tracked.append((record["customer_id"], stamp))
                    elif kind == "burst_last":
                        burst_sent[record["event_id"]] = int(time.time() * 1000)
                        produce(name, record)
                    else:
                        produce(name, record)
                    sent += 1
                next_tick += 0.01
                while (left := next_tick - now()) > 0:
                    producer.poll(left)
                ticks += 1
                if ticks % 100 == 0:  # about once a second
                    alive()
            last = now()
            producer.flush(60)
        # wait for the probes, the last SLA deadline and the flags
        last_due = max(plan.sla_due.values(), default=0) / 1000
        deadline = time.monotonic() + drain
        while time.monotonic() < deadline:
            alive()
            probes_done = len(visible.seen) >= len(visible.tracked) and len(redis.seen) >= len(
                redis.tracked
            )
            if probes_done and time.time() > last_due + 3:
                break
            time.sleep(0.2)
    finally:
        visible.stop.set()
        redis.stop.set()
        for thread in threads:
            thread.join(10)
        backend.close()
    for errors in (visible.errors, redis.errors):
        if errors:
            raise ServiceError(f"bench pipeline: a visibility poller failed: {errors[0]!r}")

    ours = set(plan.sla_due)
    alerts = [
        (a, ts)
        for a, ts in read_topic(settings, "alert")
        if a["subject_id"] in ours and a["level"] == "warning"
    ]
    deliveries = {
        d["data"]["alert_id"]: d["received_at_ms"]
        for d in received(received_path)
        if isinstance(d.get("data"), dict) and "received_at_ms" in d
    }
    fired = [(a["fired_at"] - a["deadline_at"]) / 1000 for a, _ in alerts]
    arrived = [
        (deliveries[a["alert_id"]] - a["deadline_at"]) / 1000
        for a, _ in alerts
        if a["alert_id"] in deliveries
    ]
    flags = [
        (ts - burst_sent[f["evidence_event_ids"][-1]]) / 1000
        for f, ts in read_topic(settings, "security_flag")
        if f["rule"] == "brute_force"
        and f["evidence_event_ids"]
        and f["evidence_event_ids"][-1] in burst_sent
    ]
    redis_delays = [redis.seen[c] - t for c, t in redis.tracked if c in redis.seen]
    ch_delays = [visible.seen[e] - t for e, t in visible.tracked if e in visible.seen]
    return {
        "target_rate_events_per_s": round(rate),
        "duration_s": duration,
        "events": len(plan.items),
        "achieved_rate_events_per_s": round((len(plan.items) - 1) / (last - first)),
        "max_behind_schedule_ms": round(behind * 1000, 1),
        "produce_to_profile_in_redis": percentiles_ms(redis_delays),
        "profile_probes_lost": len(redis.tracked) - len(redis_delays),
        "produce_to_queryable_in_clickhouse": percentiles_ms(ch_delays),
        "clickhouse_probes_lost": len(visible.tracked) - len(ch_delays),
        "deadline_to_alert_fired": percentiles_ms(fired),
        "deadline_to_alert_received": percentiles_ms(arrived),
        "sla_items": len(plan.sla_due),
        "sla_alerts_on_topic": len(alerts),
        "sla_alerts_received": len(arrived),
        "event_to_security_flag": percentiles_ms(flags),
        "bursts": len(burst_sent),
        "burst_flags": len(flags),
    }
