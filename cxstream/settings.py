"""The one settings object of cxstream.

Read from the environment (prefix ``CX_``, nested sections with ``__``, for example
``CX_KAFKA__BOOTSTRAP_SERVERS``) or a ``.env`` file, once, by :func:`load_settings`. Secrets are
``SecretStr`` so that printing the settings never shows them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
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
    #: client certificate (PEM; key inside or in ssl_keyfile) for servers with tls-auth-clients
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    #: clients' defaults (cxstream/redis_connection.py); callers with tighter needs pass theirs
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    socket_timeout_seconds: float | None = Field(default=5.0, gt=0)
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
    #: 50k: fewer, bigger parts cost the server half the CPU per row of 20k, and the time limit
    #: below still bounds the delay at low rates (``cxstream bench sink --opt sweep=true``)
    sink_batch_max_rows: int = Field(default=50_000, ge=1)
    sink_batch_max_seconds: float = Field(default=0.5, gt=0)
    #: inserts in flight at once, each batch on its own connection and thread: the client
    #: packing the next batch while the server writes the previous one (offsets are still
    #: committed in batch order; ``cxstream bench sink`` measured the default)
    insert_connections: int = Field(default=2, ge=1, le=8)
    #: pack DateTime, Nullable and repeated-String columns whole (sinks/clickhouse/native.py)
    #: instead of the driver's per-value loops; the same bytes on the wire
    fast_insert_writer: bool = True
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
    #: longest a worker's fetch waits at the broker for ``fetch_min_bytes`` (Faust hard-codes
    #: 1500 ms, which left idle-ish workers waiting up to 1.5 s per event: flag delay p99 3.5 s
    #: at 3k/s vs 0.2 s with 100 ms, measured by `cxstream bench security`)
    fetch_max_wait_ms: int = Field(default=25, ge=1, le=30_000)
    #: a fetch returns once this much data waits (Kafka's fetch.min.bytes; aiokafka's default
    #: 1 answers at once): with 1 MiB a live worker lingers up to ``fetch_max_wait_ms`` per
    #: fetch and handles bigger batches, while a backlog is still fetched without waiting.
    #: bench profiles at 10k events/s: worker CPU per event 76-81 -> 67-72 us (25 ms) and
    #: 60-61 us (50 ms), three runs each; 1 = the lowest latency at low rates
    fetch_min_bytes: int = Field(default=1_048_576, ge=1)
    #: Python's gc thresholds in worker and sink processes (streams/gc_tuning.py); Python's
    #: own (700, 10, 10) re-scanned the cached states every 700 allocations. A larger middle
    #: one makes longer pauses: (100000, 50, 100) paused up to 286-344 ms, (50000, 5, 100)
    #: up to 147 ms, at the same throughput (bench profiles / pipeline, gc callbacks)
    gc_thresholds: tuple[int, int, int] = (50_000, 5, 100)
    #: the worker collects young objects between fetched batches once this many containers
    #: outlived the batch that made them (0 = off: Python's automatic collection with
    #: ``gc_thresholds``). Automatic collections ran in the middle of a batch, when its tens of
    #: thousands of in-flight events were alive: each scanned (and promoted) all of them,
    #: 10-200 ms per collection; between batches a collection scans the few real survivors
    #: (~6,500 objects: 0.8 ms). ``cxstream bench profiles``: 36-45 -> 32-33 us/event
    gc_between_batches: int = Field(default=5_000, ge=0)
    #: the worker's automatic young-generation threshold while ``gc_between_batches`` is on:
    #: only a backstop for batches that allocate without end
    gc_backstop_threshold: int = Field(default=500_000, ge=1)
    #: with ``gc_between_batches``: what survives an old-generation collection is frozen (not
    #: scanned again); this often everything is unfrozen and collected once, so garbage
    #: cycles among frozen objects are freed (one full pause: every cached state is scanned)
    gc_thaw_seconds: float = Field(default=600.0, gt=0)


class PrivacySettings(_Section):
    #: key of the keyed HMAC that turns PII into stable pseudonyms; set it in production
    pseudonym_key: SecretStr = SecretStr("cxstream-dev-only-pseudonym-key")
    #: store PII-marked fields in clear text in sinks (off by default)
    store_pii_in_clear: bool = False
    #: field-encryption keyring (cxstream/crypto.py): key id -> base64 AES key (16/24/32 bytes),
    #: e.g. CX_PRIVACY__ENCRYPTION_KEYS='{"k2": "...", "k1": "..."}'; old ids stay to decrypt
    encryption_keys: dict[str, SecretStr] = Field(default_factory=dict)
    #: id of the key new ciphertexts are made with (must be in encryption_keys)
    encryption_active_key: str | None = None


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


class ApiSettings(_Section):
    """The HTTP API frontends use (``cxstream api``, cxstream/api/)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8088, ge=0, le=65535)
    #: frontend name -> its API key (sent as ``X-API-Key`` or ``Authorization: Bearer``); the
    #: dev default is one key for frontend "dev": set real keys in production, e.g.
    #: ``CX_API__KEYS='{"web": "...", "mobile-app": "..."}'``
    keys: dict[str, SecretStr] = Field(
        default_factory=lambda: {"dev": SecretStr("cxstream-dev-api-key")}
    )
    #: largest request body (413 beyond, refused before it is read in full)
    max_request_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    #: most events in one POST /v1/events (413 beyond)
    max_events_per_request: int = Field(default=5000, ge=1)
    #: per-key token bucket over requests: refill rate and bucket size (429 beyond)
    rate_limit_per_second: float = Field(default=2000.0, gt=0)
    rate_limit_burst: int = Field(default=4000, ge=1)
    #: a worker's web server for profiles missing in Redis (Faust routes to the owner); None: off
    worker_url: str | None = "http://127.0.0.1:6066"
    #: Kafka acknowledgement of an ingest request, and one worker/Redis lookup
    request_timeout_seconds: float = Field(default=10.0, gt=0)
    redis_max_connections: int = Field(default=64, ge=1)
    #: API processes sharing the port (SO_REUSEPORT; the kernel spreads connections)
    processes: int = Field(default=1, ge=1)
    #: event loop: ``auto`` = uvloop when importable, else asyncio's
    loop: Literal["auto", "uvloop", "asyncio"] = "auto"


class NotifyMemberSettings(_Section):
    """One on-call person and where they are reached (cxstream/notify)."""

    name: str
    webhook_url: str | None = None
    chat_url: str | None = None
    email: str | None = None


class NotifyOverrideSettings(_Section):
    """``member`` is on call instead of the rotation's turn in ``[start, end)``."""

    member: str
    start: datetime
    end: datetime


class NotifyContactSettings(_Section):
    """A channel and its address, e.g. the fallback mailbox of a team."""

    channel: Literal["webhook", "chat", "email"]
    address: str


class NotifyRotationSettings(_Section):
    """Members take turns of ``shift_hours``, handing over at ``handover_at`` + n shifts."""

    name: str
    members: list[NotifyMemberSettings] = Field(min_length=1)
    handover_at: datetime = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    shift_hours: float = Field(default=168.0, gt=0)
    overrides: list[NotifyOverrideSettings] = []
    channels: list[Literal["webhook", "chat", "email"]] = ["webhook"]
    #: used when every attempt on a channel failed (after the alert was dead-lettered)
    fallback: NotifyContactSettings | None = None


class NotifyRouteSettings(_Section):
    """First matching route wins; empty ``kinds``/``levels`` match any."""

    department: Literal["customer_service", "it", "risk_control"]
    rotation: str
    kinds: list[str] = []
    levels: list[str] = []


class NotifySettings(_Section):
    """On-call delivery of alerts and security flags (cxstream/notify)."""

    rotations: list[NotifyRotationSettings] = []
    routes: list[NotifyRouteSettings] = []
    group_id: str = "cxstream-notifier"
    #: static group membership: a restarted notifier with the same id gets its partitions back
    #: at once instead of after the session timeout
    instance_id: str | None = None
    #: SQLite file: delivery log, idempotency across restarts, acknowledgements
    delivery_log_path: Path = PROJECT_ROOT / ".cxstream" / "notify" / "delivery.sqlite"
    #: alerts delivered at once (each alert's channels run concurrently as well)
    concurrency: int = Field(default=64, ge=1)
    batch_max: int = Field(default=500, ge=1)
    #: Standard Webhooks secrets ``whsec_<base64>``; each signs, so secrets can be rotated
    webhook_secrets: list[SecretStr] = []
    timeout_seconds: float = Field(default=10.0, gt=0)
    chat_format: Literal["slack", "teams"] = "slack"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    #: CA bundle that signs the SMTP server's certificate (``None``: the system's)
    smtp_ca_file: Path | None = None
    smtp_from: str = "cxstream-alerts@localhost"
    retry_max_attempts: int = Field(default=6, ge=1)
    retry_initial_seconds: float = Field(default=0.5, gt=0)
    retry_max_seconds: float = Field(default=30.0, gt=0)
    #: ``Authorization: Bearer <key>`` of POST /v1/alerts/{id}/ack; unset disables the API
    ack_api_key: SecretStr | None = None
    ack_host: str = "127.0.0.1"
    ack_port: int = Field(default=6070, ge=0, le=65535)
    #: receiver helper: reject signatures older/newer than this
    receiver_tolerance_seconds: int = Field(default=300, ge=1)


class SecuritySettings(_Section):
    """Anomalous-access detection (processors/security, online_models/anomaly.py)."""

    #: local time of office hours and of the model's hour-of-day feature
    timezone: str = "Asia/Shanghai"
    #: a flag per (principal, rule) is raised at most once within this long
    suppression_seconds: float = Field(default=3600.0, gt=0)
    #: most evidence event ids carried by one flag (the newest are kept)
    max_evidence: int = Field(default=200, ge=1)
    #: brute force: this many failed logins of one principal within the window
    brute_force_failures: int = Field(default=8, ge=2)
    brute_force_window_seconds: float = Field(default=600.0, gt=0)
    #: credential stuffing: one ip or device failing on this many accounts within the window
    stuffing_accounts: int = Field(default=10, ge=2)
    stuffing_window_seconds: float = Field(default=1800.0, gt=0)
    #: impossible travel: implied speed between consecutive logins above this, over at least
    #: this distance (city-level geo-IP of nearby cities is noisy)
    travel_max_kmh: float = Field(default=1000.0, gt=0)
    travel_min_km: float = Field(default=500.0, ge=0)
    #: new device (not enrolled by a device_change, first seen from a new city) followed by a
    #: sensitive action within the window
    new_device_window_seconds: float = Field(default=1800.0, gt=0)
    sensitive_actions: tuple[str, ...] = ("password_reset", "transfer", "device_change")
    #: successful logins a customer needs before new devices are judged (the baseline)
    new_device_min_history: int = Field(default=3, ge=0)
    #: devices and cities remembered per principal
    max_known_devices: int = Field(default=8, ge=1)
    max_known_cities: int = Field(default=8, ge=1)
    #: staff office hours (local, start inclusive, end exclusive) and working days (Mon = 0)
    office_start_hour: int = Field(default=7, ge=0, le=23)
    office_end_hour: int = Field(default=21, ge=1, le=24)
    office_weekdays: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    #: teams staffed around the clock (hotline, chat desk): never off hours
    round_the_clock_teams: tuple[str, ...] = ("customer_service",)
    #: this many off-hours accesses of one staff member within the window make a pattern
    off_hours_min_events: int = Field(default=5, ge=1)
    off_hours_window_seconds: float = Field(default=3600.0, gt=0)
    #: staff bulk access: distinct customers viewed/exported within the window, at least the
    #: floor and at least ``ratio`` x the baseline (own when known, else the team's)
    bulk_window_seconds: float = Field(default=3600.0, gt=0)
    bulk_min_distinct: int = Field(default=60, ge=1)
    bulk_baseline_ratio: float = Field(default=5.0, gt=1)
    #: active hours of own history before the own baseline replaces the team's
    bulk_baseline_min_hours: int = Field(default=3, ge=1)
    #: anomaly model (River HalfSpaceTrees, one per partition and principal type)
    anomaly_enabled: bool = True
    #: actions the model scores and learns on every event (staff look-ups: every 5 minutes)
    anomaly_actions: tuple[str, ...] = (
        "login_success",
        "password_reset",
        "transfer",
        "device_change",
        "record_export",
    )
    anomaly_trees: int = Field(default=4, ge=1)
    anomaly_height: int = Field(default=5, ge=1)
    anomaly_window: int = Field(default=500, ge=10)
    #: the model learns one of every this many scored events (it scores all of them)
    anomaly_learn_every: int = Field(default=2, ge=1)
    #: a score at or above this raises an ``anomaly_score`` flag on its own
    anomaly_threshold: float = Field(default=0.97, gt=0, le=1.0)
    #: events a model scores (and learns a sample of) before its scores may raise flags
    anomaly_warmup: int = Field(default=2000, ge=0)
    #: model checkpoint (pickled, with the offset it reflects) every this many learned events
    anomaly_checkpoint_every: int = Field(default=5000, ge=1)


class SlaSettings(_Section):
    """Feedback SLA clocks (processors/sla): policy, calendar, timer, alert links."""

    #: time to first response from submission (hours of the clock: calendar or business hours)
    response_hours: float = Field(default=24.0, gt=0)
    #: the warning fires when this share of the response time has run
    warning_fraction: float = Field(default=0.8, gt=0, lt=1)
    #: escalation steps after the breach (clock hours) and who each one goes to (at most 3)
    escalation_hours: tuple[float, ...] = (24.0, 48.0)
    escalation_audiences: tuple[str, ...] = ("supervisor", "head_of_department")
    #: overrides, first match wins, e.g. CX_SLA__OVERRIDES='[{"severity": "critical",
    #: "hours": 4, "business_hours": false}, {"category": "fees", "channel": "branch",
    #: "hours": 48}]' (match keys: category, severity, channel; set: hours, business_hours)
    overrides: tuple[dict[str, str | float | bool], ...] = ()
    #: count only business hours (days 0=Monday..6, local start/end, holidays as ISO dates)
    business_hours: bool = False
    timezone: str = "UTC"
    business_days: tuple[int, ...] = (0, 1, 2, 3, 4)
    business_start: str = "09:00"
    business_end: str = "17:00"
    holidays: tuple[str, ...] = ()
    #: how often the timer looks for due items, and the wall-clock correction added to "now"
    tick_interval_seconds: float = Field(default=0.2, gt=0)
    clock_skew_ms: int = 0
    #: an alert fired more than this after its due time is marked late (details.late)
    late_after_ms: int = Field(default=1000, ge=0)
    #: closed items stay this long after their last event (reopens, replays), then are dropped
    closed_retention_hours: float = Field(default=720.0, gt=0)
    #: after an assignment, timers of a partition wait until its input backlog was read (so
    #: responses that came in while down stop clocks first), but at most this long
    catch_up_timeout_seconds: float = Field(default=30.0, ge=0)
    #: alert links: f"{link_base_url}/feedback/{feedback_id}"
    link_base_url: str = "https://cx.example.invalid"


class KpiSettings(_Section):
    """Real-time KPI windows and KPI breach alerts (processors/kpis/)."""

    #: windows published: tumbling minute, rolling hour and rolling day (from minute buckets)
    windows: tuple[Literal["minute", "hour", "day"], ...] = ("minute", "hour", "day")
    #: a window closes once its partition's event time passed the window's end by this much
    lateness_seconds: float = Field(default=60.0, ge=0)
    #: rolling windows are published every this many seconds of event time (whole minutes)
    publish_interval_seconds: int = Field(default=60, ge=60, multiple_of=60)
    #: after a jump in event time, publish at most this many of the skipped windows per kind
    max_catchup_windows: int = Field(default=60, ge=1)
    #: a KPI missing its target for this long (event time) raises one `alert` event
    breach_seconds: float = Field(default=900.0, ge=0)
    #: the window (global value over every partition) that breach evaluation watches
    breach_window: Literal["minute", "hour", "day"] = "hour"
    #: a window with fewer events than this neither starts nor ends a breach (count KPIs exempt)
    min_samples: int = Field(default=30, ge=1)


class ProfileSettings(_Section):
    """Live profiles (processors/profiles): the Redis mirror's outage handling."""

    #: customers remembered as changed while Redis is down; beyond it: rebuild all on return
    mirror_max_dirty: int = Field(default=1_000_000, ge=1)
    #: how often a down Redis is probed
    mirror_retry_seconds: float = Field(default=1.0, gt=0)
    #: one Redis round trip; slower counts as down (the stream must not wait for Redis)
    mirror_timeout_seconds: float = Field(default=1.0, gt=0)
    #: changed customers are coalesced and published (Redis + profile_snapshot) this often;
    #: bench profiles at 10k/s (of the stream's first 150k events), produce -> Redis p99:
    #: 100 ms 498 ms, 50 ms 316, 25 ms 329 (and 25 ms cost a tenth of the throughput)
    publish_interval_ms: int = Field(default=50, ge=1)
    #: on erasure, send a null value for the customer on the compacted profile_snapshot topic,
    #: so compaction removes their earlier snapshots (the ClickHouse sink skips null values)
    snapshot_tombstones: bool = True
    #: decoded profile states kept in memory per worker (~5.5 KB each, measured by `cxstream
    #: bench profiles`; the table stays the truth; 0 = off)
    cache_states: int = Field(default=50_000, ge=0)


class RecoSettings(_Section):
    """The recommender (processors/reco, online_models/reco)."""

    #: items per served list
    k: int = Field(default=5, ge=1)
    #: epsilon-greedy exploration per rank (logged as the propensity of every item)
    epsilon: float = Field(default=0.1, ge=0, le=1)
    learning_rate: float = Field(default=0.05, gt=0)
    #: per-customer Beta posterior: weight of the contextual model's prior in pseudo-impressions,
    #: and the upper-confidence bonus (posterior standard deviations) lists are ranked by
    prior_strength: float = Field(default=4.0, gt=0)
    optimism: float = Field(default=1.0, ge=0)
    #: an impression is labelled by a click/conversion within this long (event time)
    attribution_window_seconds: float = Field(default=1800.0, gt=0)
    #: re-serve when the context moved this far (L1) or the model learned this many labels
    feature_change_threshold: float = Field(default=0.5, gt=0)
    model_change_threshold: int = Field(default=1000, ge=1)
    #: model + offsets are saved at most this often (and at stop)
    checkpoint_interval_seconds: float = Field(default=5.0, gt=0)
    #: prequential KPI rows (kpi_measurement) per event-time window of this length
    kpi_window_seconds: int = Field(default=3600, ge=60)
    #: served lists expire from Redis after this long
    ttl_seconds: int = Field(default=7 * 86400, ge=1)


class ErasureSettings(_Section):
    """Right to erasure (processors/erasure, the sink's block list; cxstream/erasure.py)."""

    #: where sinks read the block list: ClickHouse ``erased_customers`` or the Redis sorted set
    blocklist_source: Literal["clickhouse", "redis"] = "clickhouse"
    #: sinks reload the block list this often; the erasure processor waits this long (plus
    #: ``settle_margin_seconds``) after marking a customer before deleting, so no sink batch
    #: built before the mark can land after the deletion
    blocklist_refresh_seconds: float = Field(default=5.0, gt=0)
    settle_margin_seconds: float = Field(default=1.0, ge=0)
    #: backoff while ClickHouse or Redis is unreachable (the batch is retried, never skipped)
    retry_initial_seconds: float = Field(default=0.5, gt=0)
    retry_max_seconds: float = Field(default=30.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CX_",
        env_nested_delimiter="__",
        env_file=".env",
        #: CX_X__Y=null sets an optional field to None (e.g. no Redis socket timeout)
        env_parse_none_str="null",
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
    erasure: ErasureSettings = ErasureSettings()
    reco: RecoSettings = RecoSettings()
    profiles: ProfileSettings = ProfileSettings()
    kpi: KpiSettings = KpiSettings()
    sla: SlaSettings = SlaSettings()
    security: SecuritySettings = SecuritySettings()
    notify: NotifySettings = NotifySettings()
    api: ApiSettings = ApiSettings()
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


def section_environment(settings: Settings, section: str) -> dict[str, str]:
    """``CX_<SECTION>__<FIELD>`` variables giving a child process this section as set here.

    Benchmarks and the main job start workers with a clean ``CX_`` environment plus a few
    overrides; without this, a Redis user, password or TLS file set in ``.env`` or by the
    caller would be lost on the way to the child.
    """
    values: BaseModel = getattr(settings, section)
    env: dict[str, str] = {}
    for name in type(values).model_fields:
        value = getattr(values, name)
        if value is None:
            text = "null"  # env_parse_none_str: None even where the default is not
        elif isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list | dict | tuple):
            text = json.dumps(value)  # raises on nested models, whose secrets would be masked
        else:
            text = str(value)
        env[f"CX_{section.upper()}__{name.upper()}"] = text
    return env
