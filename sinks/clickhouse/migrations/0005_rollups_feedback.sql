-- KPI 2: feedback heard and answered within 24 h.
--
-- feedback_* counts submissions per department, channel, category and severity.
--
-- feedback_lifecycle holds one aggregate state per feedback item, fed by both the submission
-- and the status-change topics. Its states are min/any/argMax/max: merging a replayed event
-- into them changes nothing, so it is exact even under duplicates. Read it with the -Merge
-- combinators, grouped by feedback_id (rows of one item merge only eventually):
--   SELECT feedback_id,
--          anyIfMerge(department) AS department, anyIfMerge(channel) AS channel,
--          minIfMerge(submitted_at) AS submitted_at,                  -- 1970-01-01 = unknown
--          minIfMerge(first_response_at) AS first_response_at,        -- 1970-01-01 = none yet
--          argMaxMerge(last_status) AS status, maxMerge(updated_at) AS updated_at
--   FROM feedback_lifecycle GROUP BY feedback_id HAVING submitted_at > toDateTime(0, 'UTC')
-- answered within 24 h: first_response_at > 0 AND first_response_at - submitted_at <= 86400.
-- Partitions are months of the event time, so an item's states can sit in two partitions.
-- Rollups are SummingMergeTree tables fed by materialized views at three grains (_1m, _1h,
-- _1d); rows of one key are summed only at merges, so query them with sum() ... GROUP BY (never
-- read a single row as the total). They are exact because the sink never inserts a Kafka
-- offset twice (sink_offsets fence, see 0002); an event re-sent by a producer under a new
-- offset is collapsed in the raw table by FINAL but counted twice here.

CREATE TABLE IF NOT EXISTS {db}.feedback_1m
(
    bucket     DateTime('UTC'),
    department LowCardinality(String),
    channel    LowCardinality(String),
    category   LowCardinality(String),
    severity   LowCardinality(String),
    submitted  UInt64,
    with_text  UInt64
)
ENGINE = SummingMergeTree((submitted, with_text))
PARTITION BY toYYYYMMDD(bucket)
ORDER BY (bucket, department, channel, category, severity);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.feedback_1m_mv
TO {db}.feedback_1m AS
SELECT
    toStartOfMinute(occurred_at) AS bucket,
    department AS department,
    channel AS channel,
    category AS category,
    severity AS severity,
    count() AS submitted,
    countIf(text_length > 0) AS with_text
FROM {db}.feedback_submitted
GROUP BY bucket, department, channel, category, severity;

CREATE TABLE IF NOT EXISTS {db}.feedback_1h
(
    bucket     DateTime('UTC'),
    department LowCardinality(String),
    channel    LowCardinality(String),
    category   LowCardinality(String),
    severity   LowCardinality(String),
    submitted  UInt64,
    with_text  UInt64
)
ENGINE = SummingMergeTree((submitted, with_text))
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, department, channel, category, severity);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.feedback_1h_mv
TO {db}.feedback_1h AS
SELECT
    toStartOfHour(occurred_at) AS bucket,
    department AS department,
    channel AS channel,
    category AS category,
    severity AS severity,
    count() AS submitted,
    countIf(text_length > 0) AS with_text
FROM {db}.feedback_submitted
GROUP BY bucket, department, channel, category, severity;

CREATE TABLE IF NOT EXISTS {db}.feedback_1d
(
    bucket     DateTime('UTC'),
    department LowCardinality(String),
    channel    LowCardinality(String),
    category   LowCardinality(String),
    severity   LowCardinality(String),
    submitted  UInt64,
    with_text  UInt64
)
ENGINE = SummingMergeTree((submitted, with_text))
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, department, channel, category, severity);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.feedback_1d_mv
TO {db}.feedback_1d AS
SELECT
    toStartOfDay(occurred_at) AS bucket,
    department AS department,
    channel AS channel,
    category AS category,
    severity AS severity,
    count() AS submitted,
    countIf(text_length > 0) AS with_text
FROM {db}.feedback_submitted
GROUP BY bucket, department, channel, category, severity;

CREATE TABLE IF NOT EXISTS {db}.feedback_lifecycle
(
    month             Date,
    feedback_id       String,
    customer_id       AggregateFunction(any, String),
    department        AggregateFunction(anyIf, String, UInt8),
    channel           AggregateFunction(anyIf, String, UInt8),
    category          AggregateFunction(anyIf, String, UInt8),
    severity          AggregateFunction(anyIf, String, UInt8),
    submitted_at      AggregateFunction(minIf, DateTime('UTC'), UInt8),
    first_response_at AggregateFunction(minIf, DateTime('UTC'), UInt8),
    resolved_at       AggregateFunction(minIf, DateTime('UTC'), UInt8),
    last_status       AggregateFunction(argMax, String, UInt64),
    status_changes    AggregateFunction(uniqExact, String),
    updated_at        AggregateFunction(max, DateTime('UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(month)
ORDER BY feedback_id;

-- 18.16 wants every target column, with exactly its type, from each view: "empty" states are
-- written as -If states with a false condition.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.feedback_lifecycle_submitted_mv
TO {db}.feedback_lifecycle AS
SELECT
    toStartOfMonth(occurred_at) AS month,
    feedback_id,
    anyState(customer_id) AS customer_id,
    anyIfState(toString(department), toUInt8(1)) AS department,
    anyIfState(toString(channel), toUInt8(1)) AS channel,
    anyIfState(toString(category), toUInt8(1)) AS category,
    anyIfState(toString(severity), toUInt8(1)) AS severity,
    minIfState(occurred_at, toUInt8(1)) AS submitted_at,
    minIfState(occurred_at, toUInt8(0)) AS first_response_at,
    minIfState(occurred_at, toUInt8(0)) AS resolved_at,
    argMaxState(toString('submitted'), occurred_at_ms) AS last_status,
    uniqExactState(toString('')) AS status_changes,
    maxState(occurred_at) AS updated_at
FROM {db}.feedback_submitted
GROUP BY month, feedback_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.feedback_lifecycle_status_mv
TO {db}.feedback_lifecycle AS
SELECT
    toStartOfMonth(occurred_at) AS month,
    feedback_id,
    anyState(customer_id) AS customer_id,
    anyIfState(toString(''), toUInt8(0)) AS department,
    anyIfState(toString(''), toUInt8(0)) AS channel,
    anyIfState(toString(''), toUInt8(0)) AS category,
    anyIfState(toString(''), toUInt8(0)) AS severity,
    minIfState(occurred_at, toUInt8(0)) AS submitted_at,
    minIfState(occurred_at, toUInt8(status = 'responded')) AS first_response_at,
    minIfState(occurred_at, toUInt8(status = 'resolved')) AS resolved_at,
    argMaxState(toString(status), occurred_at_ms) AS last_status,
    uniqExactState(event_id) AS status_changes,
    maxState(occurred_at) AS updated_at
FROM {db}.feedback_status_changed
GROUP BY month, feedback_id;
