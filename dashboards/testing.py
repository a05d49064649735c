"""Test helpers: a ClickHouse store filled with simulated bank traffic, for the board queries.

The input events come from the simulator (:func:`cxstream.simulate.generate`). The processors
that will produce the output topics (security flags, recommendations, SLA alerts) do not exist
yet, so :func:`derived_outputs` makes those events from the simulation's ground truth: one
security flag per injected scenario, the recommendation list behind every recommendation id
customers reacted to, and the SLA alerts the feedback lifecycle calls for. Every event is
encoded with the real codec (so it is valid against its schema) and goes through the real sink
path (:meth:`sinks.clickhouse.sink.ClickHouseSink.process`: decode, rows, fence, insert), a few
undecodable messages included, whose dead letters are fed back as the dead-letter topic.
``process`` has no consume loop, so the per-batch telemetry the loop writes to
``sink_batches`` is written here from the same figures.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Message

from cxstream.settings import Settings
from cxstream.simulate import ListLabelSink, ScenarioLabel, SimulationConfig, generate
from dashboards.kpis import ANSWER_WINDOW_SECONDS
from sinks.clickhouse.backend import ClickHouseBackend
from streams.codec import AvroCodec
from streams.dlq import H_SOURCE_TOPIC, DeadLetter
from streams.registry import EmbeddedRegistry

Event = tuple[str, dict[str, Any]]
WINDOW_MS = ANSWER_WINDOW_SECONDS * 1000
#: severity the (future) detector is expected to give each injected scenario
SCENARIO_SEVERITY = {
    "brute_force": "high",
    "credential_stuffing": "high",
    "impossible_travel": "medium",
    "staff_bulk_access": "critical",
}
POLICIES = ("popularity", "linucb")
BATCH_COLUMNS = (
    "at", "at_ms", "group_id", "worker", "target", "rows", "fenced_rows", "dead_letters",
    "attempts", "insert_ms", "batch_ms", "delay_ms_max", "delay_ms_sum",
)  # fmt: skip


@dataclass
class SimulatedData:
    config: SimulationConfig
    #: inputs and derived outputs, in publish order
    events: list[Event]
    labels: list[ScenarioLabel]

    @property
    def start_ms(self) -> int:
        return self.config.start_ms

    @property
    def end_ms(self) -> int:
        return self.config.start_ms + self.config.span_ms()

    def of(self, name: str) -> list[dict[str, Any]]:
        return [record for kind, record in self.events if kind == name]


@dataclass
class LoadReport:
    messages: int = 0
    dead_letters: int = 0
    batches: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)


def simulate(config: SimulationConfig) -> SimulatedData:
    """The simulator's events for ``config`` plus the outputs derived from its ground truth."""
    labels = ListLabelSink()
    inputs: list[Event] = [(e.name, e.record) for e in generate(config, labels)]
    end_ms = config.start_ms + config.span_ms()
    outputs = derived_outputs(inputs, labels.labels, end_ms, seed=config.seed)
    events = sorted(inputs + outputs, key=lambda e: e[1]["occurred_at"])
    return SimulatedData(config, events, labels.labels)


def derived_outputs(
    inputs: Sequence[Event], labels: Sequence[ScenarioLabel], end_ms: int, *, seed: int = 0
) -> list[Event]:
    """Security flags, recommendations and SLA alerts implied by the simulated inputs."""
    rng = random.Random(f"{seed}:outputs")
    return [
        *_flags(labels, rng),
        *_recommendations(inputs, rng),
        *_sla_alerts(inputs, end_ms, rng),
    ]


def _uuid(rng: random.Random) -> str:
    import uuid

    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _flags(labels: Iterable[ScenarioLabel], rng: random.Random) -> list[Event]:
    flags = []
    for label in labels:
        customer = label.principal_id if label.principal_type == "customer" else None
        flags.append(
            (
                "security_flag",
                {
                    "event_id": _uuid(rng),
                    "occurred_at": label.end_ms,
                    "flag_id": f"flag-{label.label_id}",
                    "principal_id": label.principal_id,
                    "principal_type": label.principal_type,
                    "customer_id": customer,
                    "severity": SCENARIO_SEVERITY[label.scenario],
                    "rule": label.scenario,
                    "score": round(rng.uniform(0.7, 1.0), 3),
                    "explanation": f"{label.scenario} pattern over {len(label.event_ids)} events",
                    "evidence_event_ids": list(label.event_ids[:20]),
                },
            )
        )
    return flags


def _recommendations(inputs: Iterable[Event], rng: random.Random) -> list[Event]:
    lists: dict[str, dict[str, Any]] = {}
    for name, record in inputs:
        if name != "recommendation_feedback":
            continue
        entry = lists.setdefault(
            record["recommendation_id"],
            {"customer_id": record["customer_id"], "first": record["occurred_at"], "items": {}},
        )
        entry["first"] = min(entry["first"], record["occurred_at"])
        entry["items"].setdefault(record["product_id"], record["position"] or 1)
    out = []
    for recommendation_id, entry in sorted(lists.items()):
        items = sorted(entry["items"].items(), key=lambda item: item[1])
        policy = rng.choice(POLICIES)
        out.append(
            (
                "recommendation",
                {
                    "event_id": _uuid(rng),
                    # computed just before the frontend showed it
                    "occurred_at": entry["first"] - 1500,
                    "customer_id": entry["customer_id"],
                    "recommendation_id": recommendation_id,
                    "items": [
                        {
                            "product_id": product,
                            "rank": rank,
                            "score": round(1.0 / rank, 4),
                            "propensity": round(rng.uniform(0.05, 0.9), 4),
                            "reason_code": "similar_customers",
                        }
                        for product, rank in items
                    ],
                    "policy": policy,
                    "model_version": f"{policy}-{1 + rng.randrange(2)}",
                    "explored": rng.random() < 0.1,
                },
            )
        )
    return out


def _sla_alerts(inputs: Iterable[Event], end_ms: int, rng: random.Random) -> list[Event]:
    """Warning 4 h before the deadline, breach at it, escalations 4 h and 12 h after it, while
    the item is unanswered."""
    submitted: dict[str, dict[str, Any]] = {}
    responded: dict[str, int] = {}
    for name, record in inputs:
        if name == "feedback_submitted":
            submitted[record["feedback_id"]] = record
        elif name == "feedback_status_changed" and record["status"] == "responded":
            fid = record["feedback_id"]
            responded[fid] = min(responded.get(fid, record["occurred_at"]), record["occurred_at"])
    out = []
    for fid, record in sorted(submitted.items()):
        deadline = record["occurred_at"] + WINDOW_MS
        answer = responded.get(fid)
        steps = (
            ("warning", deadline - 4 * 3_600_000),
            ("breach", deadline),
            ("escalation_1", deadline + 4 * 3_600_000),
            ("escalation_2", deadline + 12 * 3_600_000),
        )
        for level, at in steps:
            if at > end_ms or (answer is not None and answer <= at):
                continue
            out.append(
                (
                    "alert",
                    {
                        "event_id": _uuid(rng),
                        "occurred_at": at,
                        "alert_id": f"sla:{fid}:{level}",
                        "kind": "feedback_sla",
                        "level": level,
                        "department": record["department"],
                        "subject_id": fid,
                        "customer_pseudonym": None,
                        "deadline_at": deadline,
                        "fired_at": at,
                        "late_ms": 0,
                        "summary": f"feedback {fid} ({record['severity']}): {level}",
                        "link": None,
                        "details": {"channel": record["channel"]},
                    },
                )
            )
    return out


def _messages(settings: Settings, events: Sequence[Event], codec: AvroCodec) -> list[Message]:
    offsets: dict[str, int] = {}
    messages = []
    for name, record in events:
        topic = settings.topic(name)
        offset = offsets.get(topic, 0)
        offsets[topic] = offset + 1
        messages.append(
            Message(
                topic=topic,
                partition=0,
                offset=offset,
                key=record["event_id"].encode(),
                value=codec.encode(name, record),
                timestamp=(1, record["occurred_at"]),
            )
        )
    return messages


def _broken(settings: Settings, count: int, first_offset: int) -> list[Message]:
    """Messages no codec can read (truncated frames): the sink dead-letters them."""
    topic = settings.topic("transaction")
    return [
        Message(topic=topic, partition=1, offset=first_offset + i, key=None, value=b"\x00\x00")
        for i in range(count)
    ]


def load(
    settings: Settings,
    backend: ClickHouseBackend,
    data: SimulatedData,
    *,
    batch_size: int = 5000,
    broken: int = 3,
) -> LoadReport:
    """Push ``data`` through the sink into ``backend`` (migrated), in batches."""
    from sinks.clickhouse.sink import ClickHouseSink

    codec = AvroCodec(EmbeddedRegistry(), max_event_bytes=settings.max_event_bytes)
    messages = _messages(settings, data.events, codec) + _broken(settings, broken, 0)
    sink = ClickHouseSink(settings, backend)
    report = LoadReport(messages=len(messages))
    letters_out = []
    for start in range(0, len(messages), batch_size):
        chunk = messages[start : start + batch_size]
        started = time.perf_counter()
        letters = sink.process(chunk)
        _record_batch(backend, settings, chunk, started, letters)
        letters_out += letters
        report.batches += 1
    if letters_out:
        dlq = settings.topic("dlq")
        # the dead-letter topic as the sink reads it back (headers describe the failure)
        dead = [
            Message(
                topic=dlq,
                partition=0,
                offset=i,
                key=letter.key,
                value=letter.value,
                headers=list(letter.headers),
                timestamp=(1, int(time.time() * 1000)),
            )
            for i, letter in enumerate(letters_out)
        ]
        sink.process(dead)
        report.dead_letters = len(dead)
    for message in messages:
        topic = str(message.topic())
        report.by_topic[topic] = report.by_topic.get(topic, 0) + 1
    return report


def _record_batch(
    backend: ClickHouseBackend,
    settings: Settings,
    chunk: Sequence[Message],
    started: float,
    letters: Sequence[DeadLetter],
) -> None:
    """One ``sink_batches`` row per topic of the chunk, with the figures the consume loop keeps."""
    now_ms = int(time.time() * 1000)
    took_ms = int((time.perf_counter() - started) * 1000)
    dead: dict[str, int] = {}
    for letter in letters:
        source = dict(letter.headers).get(H_SOURCE_TOPIC, b"").decode()
        dead[source] = dead.get(source, 0) + 1
    figures: dict[str, list[int]] = {}
    for message in chunk:
        kind, timestamp = message.timestamp()
        if kind:  # undecodable messages carry no event time
            figures.setdefault(str(message.topic()), []).append(timestamp)
    data: list[list[Any]] = [[] for _ in BATCH_COLUMNS]
    worker = f"{socket.gethostname()}:test"
    for topic, occurred in sorted(figures.items()):
        values = (
            now_ms // 1000, now_ms, settings.clickhouse.sink_group_id, worker, topic,
            len(occurred), 0, dead.get(topic, 0), 1, took_ms, took_ms,
            max(0, now_ms - min(occurred)),
            sum(max(0, now_ms - o) for o in occurred),
        )  # fmt: skip
        for column, value in zip(data, values, strict=True):
            column.append(value)
    backend.insert("sink_batches", BATCH_COLUMNS, data)
