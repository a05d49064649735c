"""Declarative Kafka topics of the platform and an idempotent ``ensure_topics``.

``platform_topics(settings)`` is the full list (one topic per input event type, the output
topics, the dead-letter topic). ``ensure_topics`` makes the cluster match it: creates missing
topics, aligns configs that differ (incremental, so unrelated configs set by operators stay),
adds partitions when there are fewer (never removes any) and reports what it did. Running it
twice changes nothing the second time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from cxstream.errors import ConfigurationError, ServiceError
from cxstream.settings import Settings
from streams.dlq import DLQ_TOPIC
from streams.kafka_config import confluent_config

log = logging.getLogger(__name__)

DAY_MS = 86_400_000

#: event types that frontends and source systems publish
INPUT_EVENTS: tuple[str, ...] = (
    "channel_interaction",
    "chat_session",
    "customer_registered",
    "feedback_submitted",
    "feedback_status_changed",
    "survey_response",
    "transaction",
    "product_holding_changed",
    "access_event",
    "recommendation_feedback",
    "consent_changed",
    "erasure_requested",
)
#: event types that the processors publish, with their retention (``None`` = compacted)
OUTPUT_EVENTS: Mapping[str, int | None] = {
    "profile_snapshot": None,  # latest profile per customer: compacted, kept forever
    "alert": 30 * DAY_MS,
    "security_flag": 90 * DAY_MS,
    "recommendation": 7 * DAY_MS,
    "kpi_measurement": 30 * DAY_MS,
}
DLQ = DLQ_TOPIC
#: internal topic: failed logins keyed by ``ip:<pseudonym>`` / ``dev:<device>`` (not an event type)
SECURITY_LOGIN_FAILURES = "security.login_failures"
#: internal topic: each erasure request re-sent to every partition (processors/security/erasure.py)
SECURITY_ERASURES = "security.erasures"
#: internal topics of the profiles processor: links keyed by anonymous id, merges by customer id
PROFILE_INTERNAL_TOPICS: tuple[str, ...] = ("profile_links", "profile_merges")
#: largest message an input topic accepts (the broker default); the DLQ must take it plus headers
INPUT_MAX_MESSAGE_BYTES = 1_048_588
DLQ_MAX_MESSAGE_BYTES = 2 * INPUT_MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = 1
    #: ``-1`` keeps data forever; ``None`` leaves the broker default
    retention_ms: int | None = None
    cleanup_policy: Literal["delete", "compact"] = "delete"
    min_insync_replicas: int | None = None
    #: any further topic configs, by their Kafka names
    configs: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.partitions < 1 or self.replication_factor < 1:
            raise ConfigurationError(
                f"topic {self.name}: partitions and replication factor must be >= 1, got "
                f"{self.partitions} and {self.replication_factor}"
            )
        if self.min_insync_replicas is not None and (
            self.min_insync_replicas > self.replication_factor
        ):
            raise ConfigurationError(
                f"topic {self.name}: min.insync.replicas={self.min_insync_replicas} exceeds "
                f"replication factor {self.replication_factor}; no write could ever succeed"
            )

    def config(self) -> dict[str, str]:
        """Every topic config this spec pins, as Kafka names and string values."""
        config: dict[str, str] = {"cleanup.policy": self.cleanup_policy}
        if self.retention_ms is not None:
            config["retention.ms"] = str(self.retention_ms)
        if self.min_insync_replicas is not None:
            config["min.insync.replicas"] = str(self.min_insync_replicas)
        config.update({key: str(value) for key, value in self.configs.items()})
        return config


def platform_topics(settings: Settings) -> list[TopicSpec]:
    """Every topic cxstream reads or writes (Faust's own changelog topics aside)."""
    kafka = settings.kafka

    def spec(name: str, **kwargs: Any) -> TopicSpec:
        return TopicSpec(
            name=settings.topic(name),
            partitions=kafka.partitions,
            replication_factor=kafka.replication_factor,
            min_insync_replicas=min(kafka.min_insync_replicas, kafka.replication_factor),
            **kwargs,
        )

    max_bytes = {"max.message.bytes": str(INPUT_MAX_MESSAGE_BYTES)}
    specs = [
        spec(name, retention_ms=kafka.input_retention_ms, configs=max_bytes)
        for name in INPUT_EVENTS
    ]
    for name, retention in OUTPUT_EVENTS.items():
        if retention is None:
            specs.append(spec(name, retention_ms=-1, cleanup_policy="compact", configs=max_bytes))
        else:
            specs.append(spec(name, retention_ms=retention, configs=max_bytes))
    # dead letters keep the original bytes of any input message plus our headers
    specs.append(
        spec(
            DLQ,
            retention_ms=kafka.dlq_retention_ms,
            configs={"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)},
        )
    )
    # profiles' identity stitching (processors/profiles/stitching.py): internal JSON topics
    for name in PROFILE_INTERNAL_TOPICS:
        specs.append(spec(name, retention_ms=kafka.input_retention_ms))
    # failed logins re-keyed by ip pseudonym / device for credential stuffing (processors/security)
    specs.append(spec(SECURITY_LOGIN_FAILURES, retention_ms=DAY_MS, configs=max_bytes))
    specs.append(spec(SECURITY_ERASURES, retention_ms=kafka.input_retention_ms, configs=max_bytes))
    return specs


@dataclass
class TopicsReport:
    created: list[str] = field(default_factory=list)
    #: topic -> what changed, e.g. ``["retention.ms: 86400000 -> 604800000", "partitions: 2 -> 4"]``
    updated: dict[str, list[str]] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)


@dataclass(frozen=True)
class TopicState:
    """A topic as the cluster has it."""

    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str]


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(confluent_config(settings))


def describe_topics(
    admin: AdminClient, names: Iterable[str] | None = None, *, timeout: float = 30.0
) -> dict[str, TopicState]:
    """Current partitions, replication and non-default configs of existing topics."""
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise ServiceError(f"listing Kafka topics failed: {exc}") from exc
    wanted = set(metadata.topics) if names is None else set(names) & set(metadata.topics)
    wanted = {name for name in wanted if not name.startswith("__")}
    if not wanted:
        return {}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in sorted(wanted)]
    states: dict[str, TopicState] = {}
    for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
        name = resource.name
        try:
            entries: dict[str, ConfigEntry] = future.result()
        except KafkaException as exc:
            raise ServiceError(f"describing configs of topic {name} failed: {exc}") from exc
        topic = metadata.topics[name]
        replicas = {len(p.replicas) for p in topic.partitions.values()}
        states[name] = TopicState(
            name=name,
            partitions=len(topic.partitions),
            replication_factor=min(replicas, default=0),
            config={key: entry.value for key, entry in entries.items() if entry.value is not None},
        )
    return states


def ensure_topics(
    settings: Settings, specs: Sequence[TopicSpec], *, timeout: float = 30.0
) -> TopicsReport:
    """Make the cluster match ``specs``; idempotent. Returns what was created/updated/unchanged."""
    admin = admin_client(settings)
    report = TopicsReport()
    existing = describe_topics(admin, [s.name for s in specs], timeout=timeout)

    missing = [s for s in specs if s.name not in existing]
    if missing:
        new = [
            NewTopic(s.name, s.partitions, s.replication_factor, config=s.config()) for s in missing
        ]
        for name, future in admin.create_topics(new, request_timeout=timeout).items():
            try:
                future.result()
            except KafkaException as exc:
                raise ServiceError(f"creating topic {name} failed: {exc}") from exc
            report.created.append(name)

    alter: list[ConfigResource] = []
    grow: list[NewPartitions] = []
    for spec in specs:
        state = existing.get(spec.name)
        if state is None:
            continue
        changes: list[str] = []
        entries = []
        for key, value in spec.config().items():
            current = state.config.get(key)
            if current != value:
                changes.append(f"{key}: {current} -> {value}")
                entries.append(ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET))
        if entries:
            alter.append(
                ConfigResource(ConfigResource.Type.TOPIC, spec.name, incremental_configs=entries)
            )
        if state.partitions < spec.partitions:
            changes.append(f"partitions: {state.partitions} -> {spec.partitions}")
            grow.append(NewPartitions(spec.name, spec.partitions))
        elif state.partitions > spec.partitions:
            report.warnings.append(
                f"{spec.name} has {state.partitions} partitions, spec says {spec.partitions}: "
                "Kafka cannot remove partitions, left as is"
            )
        if state.replication_factor != spec.replication_factor:
            report.warnings.append(
                f"{spec.name} has replication factor {state.replication_factor}, spec says "
                f"{spec.replication_factor}: changing it needs a partition reassignment"
            )
        if changes:
            report.updated[spec.name] = changes
        else:
            report.unchanged.append(spec.name)

    if alter:
        for resource, future in admin.incremental_alter_configs(
            alter, request_timeout=timeout
        ).items():
            try:
                future.result()
            except KafkaException as exc:
                raise ServiceError(
                    f"altering configs of topic {resource.name} failed: {exc}"
                ) from exc
    if grow:
        for name, future in admin.create_partitions(grow, request_timeout=timeout).items():
            try:
                future.result()
            except KafkaException as exc:
                raise ServiceError(f"adding partitions to topic {name} failed: {exc}") from exc
    touched = set(report.created) | set(report.updated)
    if touched:
        _wait_until_visible(admin, [s for s in specs if s.name in touched], timeout)
    for warning in report.warnings:
        log.warning("%s", warning)
    return report


def _wait_until_visible(admin: AdminClient, specs: Sequence[TopicSpec], timeout: float) -> None:
    # The controller acknowledges changes before the broker's metadata cache has them (KRaft):
    # an immediate re-describe would still show the old state, and a consumer started right
    # away could miss new partitions. Wait until the broker serves what was asked for.
    deadline = time.monotonic() + timeout
    pending = list(specs)
    while True:
        states = describe_topics(admin, [s.name for s in pending], timeout=timeout)
        pending = [s for s in pending if not _matches(s, states.get(s.name))]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise ServiceError(
                f"topics {', '.join(s.name for s in pending)} still do not show the requested "
                f"partitions/configs {timeout}s after the change"
            )
        time.sleep(0.05)


def _matches(spec: TopicSpec, state: TopicState | None) -> bool:
    if state is None or state.partitions < spec.partitions:
        return False
    return all(state.config.get(key) == value for key, value in spec.config().items())


def delete_topics(settings: Settings, names: Sequence[str], *, timeout: float = 30.0) -> None:
    """Delete topics (tests and benchmarks clean up their unique prefixes with it)."""
    if not names:
        return
    admin = admin_client(settings)
    # a name twice in one request fails the whole request
    for name, future in admin.delete_topics(sorted(set(names)), request_timeout=timeout).items():
        try:
            future.result()
        except KafkaException as exc:
            raise ServiceError(f"deleting topic {name} failed: {exc}") from exc
