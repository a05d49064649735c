-- KPI 4: security and privacy. security_flags_* counts the flags of anomalous-access detection
-- per rule, severity and principal type (a leakage incident is a flag whose rule says so);
-- access_* counts access events per principal type, action and staff team ('' for customers),
-- with the number of customer records they touched (staff record access).
-- Rollups are SummingMergeTree tables fed by materialized views at three grains (_1m, _1h,
-- _1d); rows of one key are summed only at merges, so query them with sum() ... GROUP BY (never
-- read a single row as the total). They are exact because the sink never inserts a Kafka
-- offset twice (sink_offsets fence, see 0002); an event re-sent by a producer under a new
-- offset is collapsed in the raw table by FINAL but counted twice here.

CREATE TABLE IF NOT EXISTS {db}.security_flags_1m
(
    bucket         DateTime('UTC'),
    rule           LowCardinality(String),
    severity       LowCardinality(String),
    principal_type LowCardinality(String),
    flags          UInt64,
    score_sum      Float64
)
ENGINE = SummingMergeTree((flags, score_sum))
PARTITION BY toYYYYMMDD(bucket)
ORDER BY (bucket, rule, severity, principal_type);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.security_flags_1m_mv
TO {db}.security_flags_1m AS
SELECT
    toStartOfMinute(occurred_at) AS bucket,
    rule AS rule,
    severity AS severity,
    principal_type AS principal_type,
    count() AS flags,
    sum(ifNull(score, 0)) AS score_sum
FROM {db}.security_flag
GROUP BY bucket, rule, severity, principal_type;

CREATE TABLE IF NOT EXISTS {db}.security_flags_1h
(
    bucket         DateTime('UTC'),
    rule           LowCardinality(String),
    severity       LowCardinality(String),
    principal_type LowCardinality(String),
    flags          UInt64,
    score_sum      Float64
)
ENGINE = SummingMergeTree((flags, score_sum))
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, rule, severity, principal_type);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.security_flags_1h_mv
TO {db}.security_flags_1h AS
SELECT
    toStartOfHour(occurred_at) AS bucket,
    rule AS rule,
    severity AS severity,
    principal_type AS principal_type,
    count() AS flags,
    sum(ifNull(score, 0)) AS score_sum
FROM {db}.security_flag
GROUP BY bucket, rule, severity, principal_type;

CREATE TABLE IF NOT EXISTS {db}.security_flags_1d
(
    bucket         DateTime('UTC'),
    rule           LowCardinality(String),
    severity       LowCardinality(String),
    principal_type LowCardinality(String),
    flags          UInt64,
    score_sum      Float64
)
ENGINE = SummingMergeTree((flags, score_sum))
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, rule, severity, principal_type);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.security_flags_1d_mv
TO {db}.security_flags_1d AS
SELECT
    toStartOfDay(occurred_at) AS bucket,
    rule AS rule,
    severity AS severity,
    principal_type AS principal_type,
    count() AS flags,
    sum(ifNull(score, 0)) AS score_sum
FROM {db}.security_flag
GROUP BY bucket, rule, severity, principal_type;

CREATE TABLE IF NOT EXISTS {db}.access_1m
(
    bucket         DateTime('UTC'),
    principal_type LowCardinality(String),
    action         LowCardinality(String),
    staff_team     LowCardinality(String),
    events         UInt64,
    records        Int64
)
ENGINE = SummingMergeTree((events, records))
PARTITION BY toYYYYMMDD(bucket)
ORDER BY (bucket, principal_type, action, staff_team);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.access_1m_mv
TO {db}.access_1m AS
SELECT
    toStartOfMinute(occurred_at) AS bucket,
    principal_type AS principal_type,
    action AS action,
    CAST(ifNull(staff_team, '') AS LowCardinality(String)) AS staff_team,
    count() AS events,
    sum(record_count) AS records
FROM {db}.access_event
GROUP BY bucket, principal_type, action, staff_team;

CREATE TABLE IF NOT EXISTS {db}.access_1h
(
    bucket         DateTime('UTC'),
    principal_type LowCardinality(String),
    action         LowCardinality(String),
    staff_team     LowCardinality(String),
    events         UInt64,
    records        Int64
)
ENGINE = SummingMergeTree((events, records))
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, principal_type, action, staff_team);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.access_1h_mv
TO {db}.access_1h AS
SELECT
    toStartOfHour(occurred_at) AS bucket,
    principal_type AS principal_type,
    action AS action,
    CAST(ifNull(staff_team, '') AS LowCardinality(String)) AS staff_team,
    count() AS events,
    sum(record_count) AS records
FROM {db}.access_event
GROUP BY bucket, principal_type, action, staff_team;

CREATE TABLE IF NOT EXISTS {db}.access_1d
(
    bucket         DateTime('UTC'),
    principal_type LowCardinality(String),
    action         LowCardinality(String),
    staff_team     LowCardinality(String),
    events         UInt64,
    records        Int64
)
ENGINE = SummingMergeTree((events, records))
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, principal_type, action, staff_team);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.access_1d_mv
TO {db}.access_1d AS
SELECT
    toStartOfDay(occurred_at) AS bucket,
    principal_type AS principal_type,
    action AS action,
    CAST(ifNull(staff_team, '') AS LowCardinality(String)) AS staff_team,
    count() AS events,
    sum(record_count) AS records
FROM {db}.access_event
GROUP BY bucket, principal_type, action, staff_team;
