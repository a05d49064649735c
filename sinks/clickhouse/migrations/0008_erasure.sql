-- Right to erasure (PIPL / GDPR), see cxstream/erasure.py. Neither table holds a customer id in
-- clear: customers are named by their keyed pseudonym (cxstream.privacy.pseudonymise), so the
-- audit trail survives the erasure it documents without keeping what was erased.
--
-- erasure_audit: one row per erasure request and step (clickhouse, redis, faust_tables,
-- recommender, ...), written after the step finished. A replayed request rewrites the same
-- (pseudonym, request_id, step) key, collapsed by FINAL; never dropped by retention.
CREATE TABLE IF NOT EXISTS {db}.erasure_audit
(
    pseudonym       String,
    request_id      String,
    step            LowCardinality(String),
    status          LowCardinality(String),
    requested_at    DateTime('UTC'),
    requested_at_ms UInt64,
    rows_removed    UInt64,
    detail          String,
    recorded_at     DateTime('UTC'),
    recorded_at_ms  UInt64
)
ENGINE = ReplacingMergeTree(recorded_at_ms)
PARTITION BY toYYYYMM(requested_at)
ORDER BY (pseudonym, request_id, step);

-- erased_customers: the block list. Events of a listed customer that occurred at or before
-- erased_at are dropped by the sink and the processors, so a replay of Kafka cannot bring the
-- customer back. The latest erasure of a customer wins (version erased_at_ms).
CREATE TABLE IF NOT EXISTS {db}.erased_customers
(
    pseudonym    String,
    erased_at    DateTime('UTC'),
    erased_at_ms UInt64,
    request_id   String,
    recorded_at  DateTime('UTC')
)
ENGINE = ReplacingMergeTree(erased_at_ms)
ORDER BY pseudonym;
