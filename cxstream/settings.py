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


class RegistrySettings(_Section):
    #: ``None`` means the embedded registry built from ``schemas/`` (stable ids, no server).
    url: str | None = None
    username: str | None = None
    password: SecretStr | None = None


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


class PrivacySettings(_Section):
    #: key of the keyed HMAC that turns PII into stable pseudonyms; set it in production
    pseudonym_key: SecretStr = SecretStr("cxstream-dev-only-pseudonym-key")
    #: store PII-marked fields in clear text in sinks (off by default)
    store_pii_in_clear: bool = False


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
