-- Raw event tables, one per event type, generated from the v1 Avro schemas by
-- `python -m sinks.clickhouse.tables` (layout: sinks/clickhouse/tables.py LAYOUTS).
-- Fields added by later schema versions are added by migrations.sync_columns.
-- Query with FINAL: ReplacingMergeTree collapses a re-sent event_id only at merges.

CREATE TABLE IF NOT EXISTS {db}.access_event
(
    event_id           String,
    occurred_at        DateTime('UTC'),
    occurred_at_ms     UInt64,
    principal_id       String,
    principal_type     LowCardinality(String),
    action             LowCardinality(String),
    target_customer_id Nullable(String),
    record_count       Int32,
    staff_team         LowCardinality(Nullable(String)),
    ip                 Nullable(String),
    device_id          Nullable(String),
    user_agent         Nullable(String),
    geo_country        LowCardinality(Nullable(String)),
    geo_city           LowCardinality(Nullable(String)),
    geo_lat            Nullable(Float64),
    geo_lon            Nullable(Float64),
    auth_method        LowCardinality(Nullable(String)),
    amount_minor       Nullable(Int64),
    source             String,
    ingest_time        DateTime('UTC'),
    schema_id          UInt32,
    kafka_topic        String,
    kafka_partition    UInt16,
    kafka_offset       UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(occurred_at)
ORDER BY (principal_type, action, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS {db}.alert
(
    event_id           String,
    occurred_at        DateTime('UTC'),
    occurred_at_ms     UInt64,
    alert_id           String,
    kind               LowCardinality(String),
    level              LowCardinality(String),
    department         LowCardinality(String),
    subject_id         String,
    customer_pseudonym Nullable(String),
    deadline_at        Nullable(DateTime('UTC')),
    fired_at           DateTime('UTC'),
    late_ms            Int64,
    summary            String,
    link               Nullable(String),
    details_keys       Array(String),
    details_values     Array(String),
    ingest_time        DateTime('UTC'),
    schema_id          UInt32,
    kafka_topic        String,
    kafka_partition    UInt16,
    kafka_offset       UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(occurred_at)
ORDER BY (kind, level, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS {db}.channel_interaction
(
    event_id            String,
    occurred_at         DateTime('UTC'),
    occurred_at_ms      UInt64,
    customer_id         Nullable(String),
    anonymous_id        Nullable(String),
    channel             LowCardinality(String),
    action              LowCardinality(String),
    topic               String,
    session_id          Nullable(String),
    duration_ms         Nullable(Int64),
    resolved            Nullable(UInt8),
    search_query        Nullable(String),
    search_query_length UInt32,
    source              String,
    ingest_time         DateTime('UTC'),
    schema_id           UInt32,
    kafka_topic         String,
    kafka_partition     UInt16,
    kafka_offset        UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(occurred_at)
ORDER BY (channel, action, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS {db}.chat_session
(
    event_id                  String,
    occurred_at               DateTime('UTC'),
    occurred_at_ms            UInt64,
    customer_id               String,
    session_id                String,
    started_at                DateTime('UTC'),
    agent_joined_at           Nullable(DateTime('UTC')),
    agent_id                  Nullable(String),
    bot_only                  UInt8,
    message_count             Int32,
    resolved                  UInt8,
    topic                     String,
    transcript_excerpt        Nullable(String),
    transcript_excerpt_length UInt32,
    source                    String,
    ingest_time               DateTime('UTC'),
    schema_id                 UInt32,
    kafka_topic               String,
    kafka_partition           UInt16,
    kafka_offset              UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(occurred_at)
ORDER BY (bot_only, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS {db}.consent_changed
(
    event_id        String,
    occurred_at     DateTime('UTC'),
    occurred_at_ms  UInt64,
    customer_id     String,
    consent         LowCardinality(String),
    granted         UInt8,
    channel         LowCardinality(String),
    source          String,
    ingest_time     DateTime('UTC'),
    schema_id       UInt32,
    kafka_topic     String,
    kafka_partition UInt16,
    kafka_offset    UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (customer_id, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS {db}.customer_registered
(
    event_id        String,
    occurred_at     DateTime('UTC'),
    occurred_at_ms  UInt64,
    customer_id     String,
    full_name       String,
    email           Nullable(String),
    phone           Nullable(String),
    national_id     Nullable(String),
    birth_year      Int32,
    city            LowCardinality(String),
    risk_profile    LowCardinality(String),
    segment         LowCardinality(String),
    customer_since  DateTime('UTC'),
    source          String,
    ingest_time     DateTime('UTC'),
    schema_id       UInt32,
    kafka_topic     String,
    kafka_partition UInt16,
    kafka_offset    UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (customer_id, event_id);

CREATE TABLE IF NOT EXISTS {db}.erasure_requested
(
    event_id        String,
    occurred_at     DateTime('UTC'),
    occurred_at_ms  UInt64,
    customer_id     String,
    request_id      String,
    channel         LowCardinality(String),
    reason          Nullable(String),
    reason_length   UInt32,
    source          String,
    ingest_time     DateTime('UTC'),
    schema_id       UInt32,
    kafka_topic     String,
    kafka_partition UInt16,
    kafka_offset    UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (customer_id, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS {db}.feedback_status_changed
(
    event_id        String,
    occurred_at     DateTime('UTC'),
    occurred_at_ms  UInt64,
    customer_id     String,
    feedback_id     String,
    status          LowCardinality(String),
    department      LowCardinality(Nullable(String)),
    agent_id        Nullable(String),
    note            Nullable(String),
    note_length     UInt32,
    source          String,
    ingest_time     DateTime('UTC'),
    schema_id       UInt32,
    kafka_topic     String,
    kafka_partition UInt16,
    kafka_offset    UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(occurred_at)
ORDER BY (status, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS {db}.feedback_submitted
(
    event_id        String,
    occurred_at     DateTime('UTC'),
    occurred_at_ms  UInt64,
    customer_id     String,
    feedback_id     String,
    channel         LowCardinality(String),
    category        LowCardinality(String),
    severity        LowCardinality(String),
    department      LowCardinality(String),
    text            Nullable(String),
    text_length     UInt32,
    contact_email   Nullable(String),
    contact_phone   Nullable(String),
    source          String,
    ingest_time     DateTime('UTC'),
    schema_id       UInt32,
    kafka_topic     String,
    kafka_partition UInt16,
    kafka_offset    UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(occurred_at)
ORDER BY (department, channel, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS {db}.kpi_measurement
(
    event_id        String,
    occurred_at     DateTime('UTC'),
    occurred_at_ms  UInt64,
    kpi             LowCardinality(String),
    window          LowCardinality(String),
    window_start    DateTime('UTC'),
    value           Float64,
    target          Float64,
    sample_size     Int64,
    meets_target    UInt8,
    ingest_time     DateTime('UTC'),
    schema_id       UInt32,
    kafka_topic     String,
    kafka_partition UInt16,
    kafka_offset    UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(occurred_at)
ORDER BY (kpi, window, window_start, event_id);

CREATE TABLE IF NOT EXISTS {db}.product_holding_changed
(
    event_id          String,
    occurred_at       DateTime('UTC'),
    occurred_at_ms    UInt64,
    customer_id       String,
    product_id        String,
    product_type      LowCardinality(String),
    change            LowCardinality(String),
    recommendation_id Nullable(String),
    channel           LowCardinality(String),
    source            String,
    ingest_time       DateTime('UTC'),
    schema_id         UInt32,
    kafka_topic       String,
    kafka_partition   UInt16,
    kafka_offset      UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(occurred_at)
ORDER BY (product_type, change, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS {db}.profile_snapshot
(
    event_id                String,
    occurred_at             DateTime('UTC'),
    occurred_at_ms          UInt64,
    customer_id             String,
    version                 Int64,
    channel_counts_keys     Array(String),
    channel_counts_values   Array(Int64),
    preferred_channel       LowCardinality(Nullable(String)),
    last_seen_at            Nullable(DateTime('UTC')),
    info_requests_online    Int64,
    info_requests_offline   Int64,
    transaction_count       Int64,
    transaction_sum_minor   Int64,
    products                Array(String),
    open_feedback           Int32,
    oldest_open_feedback_at Nullable(DateTime('UTC')),
    survey_scores_keys      Array(String),
    survey_scores_values    Array(Int32),
    consents_keys           Array(String),
    consents_values         Array(UInt8),
    segment                 LowCardinality(String),
    security_flags          Int32,
    ingest_time             DateTime('UTC'),
    schema_id               UInt32,
    kafka_topic             String,
    kafka_partition         UInt16,
    kafka_offset            UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(occurred_at)
ORDER BY (customer_id, version, event_id);

CREATE TABLE IF NOT EXISTS {db}.recommendation
(
    event_id          String,
    occurred_at       DateTime('UTC'),
    occurred_at_ms    UInt64,
    customer_id       String,
    recommendation_id String,
    items_product_id  Array(String),
    items_rank        Array(Int32),
    items_score       Array(Float64),
    items_propensity  Array(Float64),
    items_reason_code Array(String),
    policy            LowCardinality(String),
    model_version     LowCardinality(String),
    explored          UInt8,
    ingest_time       DateTime('UTC'),
    schema_id         UInt32,
    kafka_topic       String,
    kafka_partition   UInt16,
    kafka_offset      UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(occurred_at)
ORDER BY (policy, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS {db}.recommendation_feedback
(
    event_id          String,
    occurred_at       DateTime('UTC'),
    occurred_at_ms    UInt64,
    customer_id       String,
    recommendation_id String,
    product_id        String,
    action            LowCardinality(String),
    position          Nullable(Int32),
    channel           LowCardinality(String),
    source            String,
    ingest_time       DateTime('UTC'),
    schema_id         UInt32,
    kafka_topic       String,
    kafka_partition   UInt16,
    kafka_offset      UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(occurred_at)
ORDER BY (action, channel, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS {db}.security_flag
(
    event_id           String,
    occurred_at        DateTime('UTC'),
    occurred_at_ms     UInt64,
    flag_id            String,
    principal_id       String,
    principal_type     LowCardinality(String),
    customer_id        Nullable(String),
    severity           LowCardinality(String),
    rule               LowCardinality(String),
    score              Nullable(Float64),
    explanation        String,
    evidence_event_ids Array(String),
    ingest_time        DateTime('UTC'),
    schema_id          UInt32,
    kafka_topic        String,
    kafka_partition    UInt16,
    kafka_offset       UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(occurred_at)
ORDER BY (rule, severity, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS {db}.survey_response
(
    event_id        String,
    occurred_at     DateTime('UTC'),
    occurred_at_ms  UInt64,
    customer_id     String,
    survey_id       String,
    dimension       LowCardinality(String),
    score           Int32,
    channel         LowCardinality(String),
    comment         Nullable(String),
    comment_length  UInt32,
    source          String,
    ingest_time     DateTime('UTC'),
    schema_id       UInt32,
    kafka_topic     String,
    kafka_partition UInt16,
    kafka_offset    UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(occurred_at)
ORDER BY (dimension, channel, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS {db}.transaction
(
    event_id        String,
    occurred_at     DateTime('UTC'),
    occurred_at_ms  UInt64,
    customer_id     String,
    transaction_id  String,
    account_id      String,
    amount_minor    Int64,
    currency        String,
    direction       LowCardinality(String),
    category        LowCardinality(String),
    channel         LowCardinality(String),
    merchant        Nullable(String),
    source          String,
    ingest_time     DateTime('UTC'),
    schema_id       UInt32,
    kafka_topic     String,
    kafka_partition UInt16,
    kafka_offset    UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(occurred_at)
ORDER BY (channel, category, occurred_at, event_id);
