-- KPI 3: share of active customers who received personalised service.
--
-- customer_days: one row per customer and day with two flags, kept as max states (exact under
-- replays and duplicates): active = the customer did something (an identified interaction, a
-- transaction, a chat, feedback, a product change, a reaction to a recommendation); served = a
-- recommendation was computed for them or they reacted to one. Over any time range:
--   SELECT countIf(a AND s) / countIf(a) FROM (
--       SELECT customer_id, maxMerge(active) AS a, maxMerge(served) AS s
--       FROM customer_days WHERE day >= ... AND day < ... GROUP BY customer_id)
-- (per day: add day to the inner GROUP BY and group the outer query by it).
--
-- recommendations_* (lists and items served per policy) and recommendation_feedback_*
-- (impressions, clicks, dismissals, conversions per channel) feed the personalisation board.
-- Rollups are SummingMergeTree tables fed by materialized views at three grains (_1m, _1h,
-- _1d); rows of one key are summed only at merges, so query them with sum() ... GROUP BY (never
-- read a single row as the total). They are exact because the sink never inserts a Kafka
-- offset twice (sink_offsets fence, see 0002); an event re-sent by a producer under a new
-- offset is collapsed in the raw table by FINAL but counted twice here.

CREATE TABLE IF NOT EXISTS {db}.customer_days
(
    day         DateTime('UTC'),
    customer_id String,
    active      AggregateFunction(max, UInt8),
    served      AggregateFunction(max, UInt8)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, customer_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.customer_days_channel_interaction_mv
TO {db}.customer_days AS
-- ClickHouse resolves WHERE through the SELECT aliases, so `customer_id` there may mean
-- assumeNotNull(customer_id) (NULL -> ''): this condition is right under either reading
SELECT
    toStartOfDay(occurred_at) AS day,
    assumeNotNull(customer_id) AS customer_id,
    maxState(toUInt8(1)) AS active,
    maxState(toUInt8(0)) AS served
FROM {db}.channel_interaction
WHERE notEmpty(ifNull(customer_id, ''))
GROUP BY day, customer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.customer_days_transaction_mv
TO {db}.customer_days AS
SELECT
    toStartOfDay(occurred_at) AS day,
    customer_id AS customer_id,
    maxState(toUInt8(1)) AS active,
    maxState(toUInt8(0)) AS served
FROM {db}.transaction
GROUP BY day, customer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.customer_days_chat_session_mv
TO {db}.customer_days AS
SELECT
    toStartOfDay(occurred_at) AS day,
    customer_id AS customer_id,
    maxState(toUInt8(1)) AS active,
    maxState(toUInt8(0)) AS served
FROM {db}.chat_session
GROUP BY day, customer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.customer_days_feedback_submitted_mv
TO {db}.customer_days AS
SELECT
    toStartOfDay(occurred_at) AS day,
    customer_id AS customer_id,
    maxState(toUInt8(1)) AS active,
    maxState(toUInt8(0)) AS served
FROM {db}.feedback_submitted
GROUP BY day, customer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.customer_days_product_holding_changed_mv
TO {db}.customer_days AS
SELECT
    toStartOfDay(occurred_at) AS day,
    customer_id AS customer_id,
    maxState(toUInt8(1)) AS active,
    maxState(toUInt8(0)) AS served
FROM {db}.product_holding_changed
GROUP BY day, customer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.customer_days_recommendation_feedback_mv
TO {db}.customer_days AS
SELECT
    toStartOfDay(occurred_at) AS day,
    customer_id AS customer_id,
    maxState(toUInt8(1)) AS active,
    maxState(toUInt8(1)) AS served
FROM {db}.recommendation_feedback
GROUP BY day, customer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.customer_days_recommendation_mv
TO {db}.customer_days AS
SELECT
    toStartOfDay(occurred_at) AS day,
    customer_id AS customer_id,
    maxState(toUInt8(0)) AS active,
    maxState(toUInt8(1)) AS served
FROM {db}.recommendation
GROUP BY day, customer_id;

CREATE TABLE IF NOT EXISTS {db}.recommendations_1m
(
    bucket   DateTime('UTC'),
    policy   LowCardinality(String),
    explored UInt8,
    lists    UInt64,
    items    UInt64
)
ENGINE = SummingMergeTree((lists, items))
PARTITION BY toYYYYMMDD(bucket)
ORDER BY (bucket, policy, explored);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.recommendations_1m_mv
TO {db}.recommendations_1m AS
SELECT
    toStartOfMinute(occurred_at) AS bucket,
    policy AS policy,
    explored AS explored,
    count() AS lists,
    sum(length(items_product_id)) AS items
FROM {db}.recommendation
GROUP BY bucket, policy, explored;

CREATE TABLE IF NOT EXISTS {db}.recommendations_1h
(
    bucket   DateTime('UTC'),
    policy   LowCardinality(String),
    explored UInt8,
    lists    UInt64,
    items    UInt64
)
ENGINE = SummingMergeTree((lists, items))
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, policy, explored);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.recommendations_1h_mv
TO {db}.recommendations_1h AS
SELECT
    toStartOfHour(occurred_at) AS bucket,
    policy AS policy,
    explored AS explored,
    count() AS lists,
    sum(length(items_product_id)) AS items
FROM {db}.recommendation
GROUP BY bucket, policy, explored;

CREATE TABLE IF NOT EXISTS {db}.recommendations_1d
(
    bucket   DateTime('UTC'),
    policy   LowCardinality(String),
    explored UInt8,
    lists    UInt64,
    items    UInt64
)
ENGINE = SummingMergeTree((lists, items))
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, policy, explored);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.recommendations_1d_mv
TO {db}.recommendations_1d AS
SELECT
    toStartOfDay(occurred_at) AS bucket,
    policy AS policy,
    explored AS explored,
    count() AS lists,
    sum(length(items_product_id)) AS items
FROM {db}.recommendation
GROUP BY bucket, policy, explored;

CREATE TABLE IF NOT EXISTS {db}.recommendation_feedback_1m
(
    bucket  DateTime('UTC'),
    action  LowCardinality(String),
    channel LowCardinality(String),
    events  UInt64
)
ENGINE = SummingMergeTree((events))
PARTITION BY toYYYYMMDD(bucket)
ORDER BY (bucket, action, channel);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.recommendation_feedback_1m_mv
TO {db}.recommendation_feedback_1m AS
SELECT
    toStartOfMinute(occurred_at) AS bucket,
    action AS action,
    channel AS channel,
    count() AS events
FROM {db}.recommendation_feedback
GROUP BY bucket, action, channel;

CREATE TABLE IF NOT EXISTS {db}.recommendation_feedback_1h
(
    bucket  DateTime('UTC'),
    action  LowCardinality(String),
    channel LowCardinality(String),
    events  UInt64
)
ENGINE = SummingMergeTree((events))
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, action, channel);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.recommendation_feedback_1h_mv
TO {db}.recommendation_feedback_1h AS
SELECT
    toStartOfHour(occurred_at) AS bucket,
    action AS action,
    channel AS channel,
    count() AS events
FROM {db}.recommendation_feedback
GROUP BY bucket, action, channel;

CREATE TABLE IF NOT EXISTS {db}.recommendation_feedback_1d
(
    bucket  DateTime('UTC'),
    action  LowCardinality(String),
    channel LowCardinality(String),
    events  UInt64
)
ENGINE = SummingMergeTree((events))
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, action, channel);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.recommendation_feedback_1d_mv
TO {db}.recommendation_feedback_1d AS
SELECT
    toStartOfDay(occurred_at) AS bucket,
    action AS action,
    channel AS channel,
    count() AS events
FROM {db}.recommendation_feedback
GROUP BY bucket, action, channel;
