-- Tables of the sink itself.
--
-- sink_offsets: one row per inserted block and Kafka partition, written by the materialized
-- views of 0003 in the same INSERT as the raw rows. It is the sink's deduplication identity:
-- before inserting after a restart, a rebalance or an ambiguous failure the sink asks it which
-- offsets at or after the committed offset already landed and skips them, so a replay never
-- reaches the raw tables, and so never reaches the SummingMergeTree rollups either (which would
-- count a duplicate twice). Also the "events in per topic" source of the pipeline board.
CREATE TABLE IF NOT EXISTS {db}.sink_offsets
(
    source_table    LowCardinality(String),
    topic           String,
    kafka_partition UInt16,
    first_offset    UInt64,
    last_offset     UInt64,
    rows            UInt64,
    offsets         Array(UInt64),
    inserted_at     DateTime('UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(inserted_at)
ORDER BY (topic, kafka_partition, last_offset);

-- sink_batches: one row per batch and target table, written by the sink after ClickHouse
-- acknowledged the batch (telemetry for the pipeline board: size, latency, delay, retries).
CREATE TABLE IF NOT EXISTS {db}.sink_batches
(
    at             DateTime('UTC'),
    at_ms          UInt64,
    group_id       LowCardinality(String),
    worker         LowCardinality(String),
    target         LowCardinality(String),
    rows           UInt64,
    fenced_rows    UInt64,
    dead_letters   UInt64,
    attempts       UInt32,
    insert_ms      UInt32,
    batch_ms       UInt32,
    delay_ms_max   UInt64,
    delay_ms_sum   UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(at)
ORDER BY (target, at);

-- dead_letter: what reached the dead-letter topic (from any worker or this sink), as its
-- headers describe it (streams/dlq.py). The payload stays in Kafka; the error message is kept
-- only with privacy.store_pii_in_clear, since it may quote a value.
CREATE TABLE IF NOT EXISTS {db}.dead_letter
(
    at               DateTime('UTC'),
    at_ms            UInt64,
    source_topic     LowCardinality(String),
    source_partition Int32,
    source_offset    Int64,
    error_class      LowCardinality(String),
    reason           LowCardinality(String),
    step             LowCardinality(String),
    message          Nullable(String),
    message_length   UInt32,
    size             UInt32,
    ingest_time      DateTime('UTC'),
    kafka_topic      String,
    kafka_partition  UInt16,
    kafka_offset     UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(at)
ORDER BY (reason, at, kafka_partition, kafka_offset);
