-- KPI 1: share of information/service requests served online (channel in web, app, social,
-- chat; sinks.clickhouse.tables.ONLINE_CHANNELS) and the satisfaction surveys of every goal:
--   online share  = sumIf(events, channel IN online AND action IN ('information_request',
--                   'service_request')) / sumIf(events, action IN (...))      FROM interactions_*
--   survey score  = sum(score_sum) / sum(responses), satisfied share = sum(satisfied) /
--                   sum(responses) (score >= 80), per dimension                FROM surveys_*
-- Rollups are SummingMergeTree tables fed by materialized views at three grains (_1m, _1h,
-- _1d); rows of one key are summed only at merges, so query them with sum() ... GROUP BY (never
-- read a single row as the total). They are exact because the sink never inserts a Kafka
-- offset twice (sink_offsets fence, see 0002); an event re-sent by a producer under a new
-- offset is collapsed in the raw table by FINAL but counted twice here.

CREATE TABLE IF NOT EXISTS {db}.interactions_1m
(
    bucket          DateTime('UTC'),
    channel         LowCardinality(String),
    action          LowCardinality(String),
    events          UInt64,
    identified      UInt64,
    resolved_events UInt64,
    duration_ms_sum Int64,
    durations       UInt64
)
ENGINE = SummingMergeTree((events, identified, resolved_events, duration_ms_sum, durations))
PARTITION BY toYYYYMMDD(bucket)
ORDER BY (bucket, channel, action);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.interactions_1m_mv
TO {db}.interactions_1m AS
SELECT
    toStartOfMinute(occurred_at) AS bucket,
    channel AS channel,
    action AS action,
    count() AS events,
    countIf(isNotNull(customer_id)) AS identified,
    countIf(ifNull(resolved, 0) = 1) AS resolved_events,
    sum(ifNull(duration_ms, 0)) AS duration_ms_sum,
    countIf(isNotNull(duration_ms)) AS durations
FROM {db}.channel_interaction
GROUP BY bucket, channel, action;

CREATE TABLE IF NOT EXISTS {db}.interactions_1h
(
    bucket          DateTime('UTC'),
    channel         LowCardinality(String),
    action          LowCardinality(String),
    events          UInt64,
    identified      UInt64,
    resolved_events UInt64,
    duration_ms_sum Int64,
    durations       UInt64
)
ENGINE = SummingMergeTree((events, identified, resolved_events, duration_ms_sum, durations))
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, channel, action);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.interactions_1h_mv
TO {db}.interactions_1h AS
SELECT
    toStartOfHour(occurred_at) AS bucket,
    channel AS channel,
    action AS action,
    count() AS events,
    countIf(isNotNull(customer_id)) AS identified,
    countIf(ifNull(resolved, 0) = 1) AS resolved_events,
    sum(ifNull(duration_ms, 0)) AS duration_ms_sum,
    countIf(isNotNull(duration_ms)) AS durations
FROM {db}.channel_interaction
GROUP BY bucket, channel, action;

CREATE TABLE IF NOT EXISTS {db}.interactions_1d
(
    bucket          DateTime('UTC'),
    channel         LowCardinality(String),
    action          LowCardinality(String),
    events          UInt64,
    identified      UInt64,
    resolved_events UInt64,
    duration_ms_sum Int64,
    durations       UInt64
)
ENGINE = SummingMergeTree((events, identified, resolved_events, duration_ms_sum, durations))
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, channel, action);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.interactions_1d_mv
TO {db}.interactions_1d AS
SELECT
    toStartOfDay(occurred_at) AS bucket,
    channel AS channel,
    action AS action,
    count() AS events,
    countIf(isNotNull(customer_id)) AS identified,
    countIf(ifNull(resolved, 0) = 1) AS resolved_events,
    sum(ifNull(duration_ms, 0)) AS duration_ms_sum,
    countIf(isNotNull(duration_ms)) AS durations
FROM {db}.channel_interaction
GROUP BY bucket, channel, action;

CREATE TABLE IF NOT EXISTS {db}.surveys_1m
(
    bucket    DateTime('UTC'),
    dimension LowCardinality(String),
    channel   LowCardinality(String),
    responses UInt64,
    score_sum Int64,
    satisfied UInt64,
    commented UInt64
)
ENGINE = SummingMergeTree((responses, score_sum, satisfied, commented))
PARTITION BY toYYYYMMDD(bucket)
ORDER BY (bucket, dimension, channel);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.surveys_1m_mv
TO {db}.surveys_1m AS
SELECT
    toStartOfMinute(occurred_at) AS bucket,
    dimension AS dimension,
    channel AS channel,
    count() AS responses,
    sum(score) AS score_sum,
    countIf(score >= 80) AS satisfied,
    countIf(comment_length > 0) AS commented
FROM {db}.survey_response
GROUP BY bucket, dimension, channel;

CREATE TABLE IF NOT EXISTS {db}.surveys_1h
(
    bucket    DateTime('UTC'),
    dimension LowCardinality(String),
    channel   LowCardinality(String),
    responses UInt64,
    score_sum Int64,
    satisfied UInt64,
    commented UInt64
)
ENGINE = SummingMergeTree((responses, score_sum, satisfied, commented))
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, dimension, channel);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.surveys_1h_mv
TO {db}.surveys_1h AS
SELECT
    toStartOfHour(occurred_at) AS bucket,
    dimension AS dimension,
    channel AS channel,
    count() AS responses,
    sum(score) AS score_sum,
    countIf(score >= 80) AS satisfied,
    countIf(comment_length > 0) AS commented
FROM {db}.survey_response
GROUP BY bucket, dimension, channel;

CREATE TABLE IF NOT EXISTS {db}.surveys_1d
(
    bucket    DateTime('UTC'),
    dimension LowCardinality(String),
    channel   LowCardinality(String),
    responses UInt64,
    score_sum Int64,
    satisfied UInt64,
    commented UInt64
)
ENGINE = SummingMergeTree((responses, score_sum, satisfied, commented))
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, dimension, channel);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.surveys_1d_mv
TO {db}.surveys_1d AS
SELECT
    toStartOfDay(occurred_at) AS bucket,
    dimension AS dimension,
    channel AS channel,
    count() AS responses,
    sum(score) AS score_sum,
    countIf(score >= 80) AS satisfied,
    countIf(comment_length > 0) AS commented
FROM {db}.survey_response
GROUP BY bucket, dimension, channel;
