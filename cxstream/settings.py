"""The one settings object of cxstream.

Read from the environment (prefix ``CX_``, nested sections with ``__``, for example
``CX_KAFKA__BOOTSTRAP_SERVERS``) or a ``.env`` file, once, by :func:`load_settings`. Secrets are
``SecretStr`` so that printing the settings never shows them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:19092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    topic_prefix: str = "cx"
    partitions: int = Field(default=4, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    min_insync_replicas: int = Field(default=1, ge=1)
    #: producer SDK tuning, chosen with ``cxstream bench produce`` (streams/producer.py)
    producer_linger_ms: float = Field(default=5.0, ge=0)
    producer_batch_bytes: int = Field(default=1_000_000, ge=1024)
    producer_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "zstd"
    #: local producer queue; when full, produce() blocks until deliveries free room
    producer_queue_messages: int = Field(default=100_000, ge=1)
    #: retention of the input event topics and of the dead-letter topic (streams/topics.py)
    input_retention_ms: int = Field(default=7 * 86_400_000, ge=-1)
    dlq_retention_ms: int = Field(default=30 * 86_400_000, ge=-1)


class RegistrySettings(_Section):
    #: ``None`` means the embedded registry built from ``schemas/`` (stable ids, no server).
    url: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    #: TLS: verify the registry's certificate (against ``ssl_cafile`` when set)
    ssl_verify: bool = True
    ssl_cafile: Path | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)
    #: how long the newest version of a subject is cached (ids are cached for good)
    latest_cache_seconds: float = Field(default=300.0, ge=0)
    #: ``cxstream registry serve`` (streams/registry_server.py)
    serve_host: str = "127.0.0.1"
    serve_port: int = Field(default=18081, ge=0, le=65535)


class RedisSettings(_Section):
    url: str = "redis://127.0.0.1:16379/0"
    username: str | None = None
    password: SecretStr | None = None
    ssl_cafile: Path | None = None
    profile_ttl_seconds: int = Field(default=30 * 86400, ge=0)


class ClickHouseSettings(_Section):
    #: ``None`` means embedded chdb at ``chdb_path``.
    host: str | None = None
    port: int = 9000
    database: str = "cxstream"
    user: str = "default"
    password: SecretStr | None = None
    secure: bool = False
    ca_certs: Path | None = None
    chdb_path: Path = PROJECT_ROOT / ".cxstream" / "chdb"
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    #: one insert or query; a batch insert must finish well inside Kafka's max.poll.interval.ms
    query_timeout_seconds: float = Field(default=60.0, gt=0)
    #: ClickHouse sink (sinks/clickhouse/sink.py): a batch is inserted when either limit is hit
    sink_group_id: str = "cxstream-clickhouse-sink"
    #: static group membership (Kafka group.instance.id): a restarted sink with the same id
    #: takes its partitions back at once instead of after the session timeout
    sink_instance_id: str | None = None
    sink_batch_max_rows: int = Field(default=20_000, ge=1)
    sink_batch_max_seconds: float = Field(default=0.5, gt=0)
    #: backoff while ClickHouse is unreachable (consumption is paused meanwhile)
    sink_retry_initial_seconds: float = Field(default=0.2, gt=0)
    sink_retry_max_seconds: float = Field(default=10.0, gt=0)
    #: retention by dropping whole partitions (sinks/clickhouse/retention.py); 0 keeps forever
    retention_raw_days: int = Field(default=400, ge=0)
    retention_minute_rollup_days: int = Field(default=35, ge=0)
    retention_hour_rollup_days: int = Field(default=400, ge=0)
    retention_day_rollup_days: int = Field(default=0, ge=0)


class StackSettings(_Section):
    """The native local services started by ``cxstream stack up`` (no Docker)."""

    home: Path = PROJECT_ROOT / ".cxstream" / "stack"
    kafka_version: str = "4.1.1"
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_heap: str = "768m"
    redis_port: int = 16379
    clickhouse_port: int = 19000
    clickhouse_http_port: int = 18123
    start_timeout_seconds: float = 90.0
    #: SIGTERM grace period before ``cxstream stack down`` sends SIGKILL
    stop_timeout_seconds: float = 30.0


class WorkerSettings(_Section):
    app_id: str = "cxstream"
    data_dir: Path = PROJECT_ROOT / ".cxstream" / "worker"
    #: Faust table store: ``memory://`` or ``rocksdb://``
    store: str = "memory://"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    #: how many events an agent takes from a partition at once (amortises Faust's per-event cost)
    batch_size: int = Field(default=2000, ge=1)
    batch_timeout_seconds: float = Field(default=0.2, gt=0)
    #: processors skip an event id seen again within this long (replays, client retries)
    dedupe_window_seconds: float = Field(default=3600.0, gt=0)
    #: a worker that stops heart-beating this long is dropped from the group and its
    #: partitions are reassigned (Kafka's default; Faust's own is 60 s)
    session_timeout_seconds: float = Field(default=45.0, ge=6)
    #: how often consumed offsets are committed (Faust's default); a crash replays at most this
    commit_interval_seconds: float = Field(default=2.8, gt=0)


class PrivacySettings(_Section):
    #: key of the keyed HMAC that turns PII into stable pseudonyms; set it in production
    pseudonym_key: SecretStr = SecretStr("cxstream-dev-only-pseudonym-key")
    #: store PII-marked fields in clear text in sinks (off by default)
    store_pii_in_clear: bool = False


class GrafanaSettings(_Section):
    """Where ``cxstream dashboards push`` upserts the boards (dashboards/push.py)."""

    url: str = "http://127.0.0.1:3000"
    #: a Grafana service-account token with the Editor role (sent as a Bearer token)
    token: SecretStr | None = None
    #: folder title; its uid is derived from it, so re-pushing finds the same folder
    folder: str = "cxstream"
    timeout_seconds: float = Field(default=10.0, gt=0)
    #: TLS: verify Grafana's certificate
    verify_tls: bool = True


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CX_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        frozen=True,
    )

    kafka: KafkaSettings = KafkaSettings()
    registry: RegistrySettings = RegistrySettings()
    redis: RedisSettings = RedisSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    stack: StackSettings = StackSettings()
    worker: WorkerSettings = WorkerSettings()
    privacy: PrivacySettings = PrivacySettings()
    grafana: GrafanaSettings = GrafanaSettings()
    #: largest encoded event accepted anywhere (producer, ingest, consumers send larger to DLQ)
    max_event_bytes: int = Field(default=256 * 1024, ge=1024)
    log_level: str = "INFO"

    def topic(self, name: str) -> str:
        """Full Kafka topic name for a logical topic (``"dlq"`` -> ``"cx.dlq"``)."""
        return f"{self.kafka.topic_prefix}.{name}"


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
