"""The SQL of every panel, per board (tables: ``sinks/clickhouse/migrations``).

Stats and trends read the rollups wherever one exists, so boards stay fast as raw tables grow:
``interactions_*``, ``surveys_*``, ``feedback_*`` (counts), ``feedback_lifecycle`` (one
aggregate state per feedback item), ``customer_days`` (active/served per customer and day),
``recommendations_*``, ``recommendation_feedback_*``, ``security_flags_*`` and ``access_*``.
Raw tables (queried with ``FINAL``, ReplacingMergeTree collapses re-sent events only at merges)
are used only for top-N lists, alerts, and the recommendation -> feedback join that no rollup
holds. Pipeline health reads the sink's own tables (``sink_offsets``, ``sink_batches``,
``dead_letter``).

Table names are unqualified: the datasource's default database (provisioning) names the
database. "Now" in SLA figures is the server's ``now()``: whether an unanswered item is past its
24 h window depends on the present, not on the range shown.
"""

from __future__ import annotations

from dashboards.kpis import ANSWER_WINDOW_SECONDS, LEAKAGE_SEVERITIES
from dashboards.sql import bucket, grain_range, quoted, ratio, var_in
from sinks.clickhouse.tables import ONLINE_CHANNELS

REQUEST_ACTIONS = ("information_request", "service_request")
STAFF_RECORD_ACTIONS = ("record_view", "record_export")
SLA_LEVELS = ("warning", "breach", "escalation_1", "escalation_2", "escalation_3")
_HOUR = grain_range("bucket", "Hour")
_MINUTE = grain_range("bucket", "Minute")
_WINDOW = ANSWER_WINDOW_SECONDS

# -- goal 1: information access -----------------------------------------------------------------

_ONLINE = (
    f"sumIf(events, channel IN ({quoted(ONLINE_CHANNELS)}))",
    "sum(events)",
)
_REQUESTS = f"FROM interactions_1h WHERE {_HOUR} AND action IN ({quoted(REQUEST_ACTIONS)})"

ONLINE_SHARE = f"SELECT {ratio(*_ONLINE)} AS online_share {_REQUESTS}"
ONLINE_SHARE_TREND = (
    f"SELECT {bucket('bucket')} AS time, {ratio(*_ONLINE)} AS online_share {_REQUESTS} "
    "GROUP BY time ORDER BY time"
)
REQUESTS_BY_CHANNEL = (
    f"SELECT {bucket('bucket')} AS time, channel AS source, sum(events) AS requests "
    f"{_REQUESTS} GROUP BY time, source ORDER BY time"
)


def _surveys(dimension: str, by_channel: bool) -> str:
    where = f"{_HOUR} AND dimension = '{dimension}'"
    if by_channel:
        where += f" AND {var_in('channel', 'channel')}"
    return f"FROM surveys_1h WHERE {where}"


_MEAN_SCORE = ratio("sum(score_sum)", "sum(responses)")
_SATISFIED = ratio("sum(satisfied)", "sum(responses)")


def survey_score(dimension: str, *, by_channel: bool = True) -> str:
    return f"SELECT {_MEAN_SCORE} AS mean_score {_surveys(dimension, by_channel)}"


def survey_score_trend(dimension: str, *, by_channel: bool = True) -> str:
    return (
        f"SELECT {bucket('bucket')} AS time, {_MEAN_SCORE} AS mean_score "
        f"{_surveys(dimension, by_channel)} GROUP BY time ORDER BY time"
    )


def survey_satisfaction(dimension: str, *, by_channel: bool = True) -> str:
    """Share of answers that count as satisfied (the rollup's ``satisfied``: score >= 80)."""
    return f"SELECT {_SATISFIED} AS satisfied_share {_surveys(dimension, by_channel)}"


def survey_satisfaction_trend(dimension: str, *, by_channel: bool = True) -> str:
    return (
        f"SELECT {bucket('bucket')} AS time, {_SATISFIED} AS satisfied_share "
        f"{_surveys(dimension, by_channel)} GROUP BY time ORDER BY time"
    )


# -- goal 2: feedback ---------------------------------------------------------------------------


def feedback_items(*, department: bool = True, channel: bool = True, details: bool = False) -> str:
    """One row per feedback item submitted in the range (from ``feedback_lifecycle``).

    Columns: ``feedback_id, dept, chan, submitted, responded`` (epoch seconds, 0 = no response
    yet), ``status`` (last status), plus ``cat, sev`` with ``details``.
    """
    extra = ", anyIfMerge(category) AS cat, anyIfMerge(severity) AS sev" if details else ""
    having = ["submitted >= toUInt32($__fromTime)", "submitted <= toUInt32($__toTime)"]
    if department:
        having.append(var_in("dept", "department"))
    if channel:
        having.append(var_in("chan", "channel"))
    # an item's states sit in the partitions of its submission month and of later months
    return (
        "SELECT feedback_id, anyIfMerge(department) AS dept, anyIfMerge(channel) AS chan, "
        "toUInt32(minIfMerge(submitted_at)) AS submitted, "
        "toUInt32(minIfMerge(first_response_at)) AS responded, "
        f"argMaxMerge(last_status) AS status{extra} "
        "FROM feedback_lifecycle WHERE month >= toStartOfMonth($__fromTime, 'UTC') "
        f"GROUP BY feedback_id HAVING {' AND '.join(having)}"
    )


_ON_TIME = f"responded > 0 AND responded - submitted <= {_WINDOW}"
# answered, or unanswered past its window; items still inside their window are not judged yet
_CLOSED = f"responded > 0 OR toUInt32(now()) - submitted > {_WINDOW}"
_ANSWERED_SHARE = ratio(f"countIf(({_CLOSED}) AND ({_ON_TIME}))", f"countIf({_CLOSED})")


def _first_response_quantile(level: float) -> str:
    return (
        f"if(countIf(responded > 0) > 0, "
        f"quantileExactIf({level})(responded - submitted, responded > 0), NULL)"
    )


def answered_within_24h(**filters: bool) -> str:
    return f"SELECT {_ANSWERED_SHARE} AS answered_24h FROM ({feedback_items(**filters)})"


def answered_within_24h_trend(**filters: bool) -> str:
    return (
        f"SELECT {bucket('toDateTime(submitted)')} AS time, {_ANSWERED_SHARE} AS answered_24h "
        f"FROM ({feedback_items(**filters)}) GROUP BY time ORDER BY time"
    )


def first_response(level: float, **filters: bool) -> str:
    return (
        f"SELECT {_first_response_quantile(level)} AS first_response_s "
        f"FROM ({feedback_items(**filters)})"
    )


def first_response_trend(**filters: bool) -> str:
    return (
        f"SELECT {bucket('toDateTime(submitted)')} AS time, "
        f"{_first_response_quantile(0.5)} AS p50, {_first_response_quantile(0.95)} AS p95 "
        f"FROM ({feedback_items(**filters)}) GROUP BY time ORDER BY time"
    )


_FEEDBACK_COUNTS = (
    f"FROM feedback_1h WHERE {_HOUR} AND {var_in('department', 'department')} "
    f"AND {var_in('channel', 'channel')}"
)
FEEDBACK_SUBMITTED = f"SELECT sum(submitted) AS n_submitted {_FEEDBACK_COUNTS}"
FEEDBACK_SUBMITTED_BY_DEPARTMENT = (
    f"SELECT {bucket('bucket')} AS time, department, sum(submitted) AS n_submitted "
    f"{_FEEDBACK_COUNTS} GROUP BY time, department ORDER BY time"
)
FEEDBACK_OPEN = f"SELECT countIf(status != 'resolved') AS n_open FROM ({feedback_items()})"
_AGE_BUCKETS = (
    ("< 4 h", 0, 4), ("4-12 h", 4, 12), ("12-24 h", 12, 24), ("24-48 h", 24, 48),
    ("> 48 h", 48, None),
)  # fmt: skip


def _age_column(label: str, low_h: int, high_h: int | None) -> str:
    condition = f"age >= {low_h * 3600}" + (f" AND age < {high_h * 3600}" if high_h else "")
    return f"countIf({condition}) AS `{label}`"


FEEDBACK_OPEN_BY_AGE = (
    "SELECT dept AS department, "
    + ", ".join(_age_column(*b) for b in _AGE_BUCKETS)
    + " FROM (SELECT dept, toUInt32(now()) - submitted AS age "
    f"FROM ({feedback_items()}) WHERE status != 'resolved') "
    "GROUP BY department ORDER BY department"
)
FEEDBACK_OLDEST_OPEN = (
    "SELECT feedback_id, dept AS department, chan AS channel, cat AS category, "
    "sev AS severity, status, toDateTime(submitted, 'UTC') AS submitted_at, "
    "if(responded > 0, toDateTime(responded, 'UTC'), NULL) AS first_response_at, "
    "round((toUInt32(now()) - submitted) / 3600, 1) AS age_h "
    f"FROM ({feedback_items(details=True)}) WHERE status != 'resolved' "
    "ORDER BY submitted LIMIT 20"
)

_SLA_ALERTS = (
    "FROM alert FINAL WHERE $__timeFilter(occurred_at) AND kind = 'feedback_sla' "
    f"AND {var_in('department', 'department')}"
)
SLA_BREACHES = f"SELECT uniqExactIf(alert_id, level = 'breach') AS breaches {_SLA_ALERTS}"
SLA_ESCALATIONS = (
    "SELECT uniqExactIf(alert_id, level IN ('escalation_1', 'escalation_2', 'escalation_3')) "
    f"AS escalations {_SLA_ALERTS}"
)
SLA_ALERTS_BY_LEVEL = (
    f"SELECT {bucket('occurred_at')} AS time, level, uniqExact(alert_id) AS alerts "
    f"{_SLA_ALERTS} AND level IN ({quoted(SLA_LEVELS)}) GROUP BY time, level ORDER BY time"
)
SLA_RECENT_ALERTS = (
    "SELECT fired_at, level, department, subject_id, summary, round(late_ms / 1000) AS late_s "
    f"{_SLA_ALERTS} AND level IN ({quoted(SLA_LEVELS)}) ORDER BY fired_at DESC LIMIT 50"
)

# -- goal 3: personalisation --------------------------------------------------------------------

_CUSTOMER_DAYS = (
    "FROM customer_days WHERE day >= toStartOfDay($__fromTime, 'UTC') AND day <= $__toTime"
)
_PERSONALISED = ratio("countIf(act = 1 AND srv = 1)", "countIf(act = 1)")
PERSONALISED_SHARE = (
    f"SELECT {_PERSONALISED} AS personalised_share FROM (SELECT customer_id, "
    f"maxMerge(active) AS act, maxMerge(served) AS srv {_CUSTOMER_DAYS} GROUP BY customer_id)"
)
PERSONALISED_SHARE_TREND = (
    f"SELECT time, {_PERSONALISED} AS personalised_share FROM (SELECT {bucket('day')} AS time, "
    f"customer_id, maxMerge(active) AS act, maxMerge(served) AS srv {_CUSTOMER_DAYS} "
    "GROUP BY time, customer_id) GROUP BY time ORDER BY time"
)
ACTIVE_CUSTOMERS_TREND = (
    f"SELECT time, countIf(act = 1) AS active, countIf(act = 1 AND srv = 1) AS served_personally "
    f"FROM (SELECT {bucket('day')} AS time, customer_id, maxMerge(active) AS act, "
    f"maxMerge(served) AS srv {_CUSTOMER_DAYS} GROUP BY time, customer_id) "
    "GROUP BY time ORDER BY time"
)

_RECOMMENDATIONS = f"FROM recommendations_1h WHERE {_HOUR}"
RECOMMENDATION_LISTS = f"SELECT sum(lists) AS n_lists {_RECOMMENDATIONS}"
RECOMMENDATION_LISTS_BY_POLICY = (
    f"SELECT {bucket('bucket')} AS time, policy, sum(lists) AS n_lists {_RECOMMENDATIONS} "
    "GROUP BY time, policy ORDER BY time"
)
_REACTIONS = f"FROM recommendation_feedback_1h WHERE {_HOUR} AND {var_in('channel', 'channel')}"
_IMPRESSIONS = "sumIf(events, action = 'impression')"
_CLICKS = "sumIf(events, action = 'click')"
_CONVERTS = "sumIf(events, action = 'convert')"
_DISMISSALS = "sumIf(events, action = 'dismiss')"
RECOMMENDATION_IMPRESSIONS = f"SELECT {_IMPRESSIONS} AS impressions {_REACTIONS}"
CLICK_RATE = f"SELECT {ratio(_CLICKS, _IMPRESSIONS)} AS click_rate {_REACTIONS}"
CONVERT_RATE = f"SELECT {ratio(_CONVERTS, _IMPRESSIONS)} AS convert_rate {_REACTIONS}"
REACTION_RATES_TREND = (
    f"SELECT {bucket('bucket')} AS time, {ratio(_CLICKS, _IMPRESSIONS)} AS click_rate, "
    f"{ratio(_CONVERTS, _IMPRESSIONS)} AS convert_rate, "
    f"{ratio(_DISMISSALS, _IMPRESSIONS)} AS dismiss_rate "
    f"{_REACTIONS} GROUP BY time ORDER BY time"
)
REACTIONS_BY_CHANNEL = (
    f"SELECT channel, {_IMPRESSIONS} AS impressions, {_CLICKS} AS clicks, "
    f"{_DISMISSALS} AS dismissals, {_CONVERTS} AS conversions {_REACTIONS} "
    "GROUP BY channel ORDER BY impressions DESC"
)

# feedback joined to the list it reacts to: no rollup holds the model of a reaction


def _reactions_per_list(time_key: str = "") -> str:
    """Impressions, clicks and conversions per list (and per ``time_key`` bucket, if given)."""
    key = f"{time_key} AS time, " if time_key else ""
    group = "time, " if time_key else ""
    return (
        # distinct event ids instead of FINAL: the same answer for re-sent events, and FINAL
        # over this table made the 30-day panels take ~1.3 s on 18.16 (bench boards)
        f"SELECT {key}recommendation_id, uniqExactIf(event_id, action = 'impression') AS shown, "
        "uniqExactIf(event_id, action = 'click') AS clicked, "
        "uniqExactIf(event_id, action = 'convert') AS converted "
        "FROM recommendation_feedback WHERE $__timeFilter(occurred_at) "
        f"AND {var_in('channel', 'channel')} GROUP BY {group}recommendation_id"
    )


# lists are computed before their feedback: look a day further back for them; any() gives the
# same attributes with or without re-sent duplicates, so no FINAL
_LISTS = (
    "SELECT recommendation_id, any(policy) AS list_policy, any(model_version) AS list_model, "
    "any(explored) AS list_explored FROM recommendation "
    "WHERE occurred_at >= $__fromTime - 86400 AND occurred_at <= $__toTime "
    "GROUP BY recommendation_id"
)
MODEL_CLICK_RATE_TREND = (
    "SELECT time, list_model AS model_version, "
    f"{ratio('sum(clicked)', 'sum(shown)')} AS click_rate FROM ("
    + _reactions_per_list(bucket("occurred_at"))
    + f") AS f ALL INNER JOIN ({_LISTS}) AS l USING recommendation_id "
    "GROUP BY time, model_version ORDER BY time"
)
POLICY_QUALITY = (
    "SELECT list_policy AS policy, list_model AS model_version, count() AS lists_with_reactions, "
    "round(avg(list_explored), 3) AS explored_share, sum(shown) AS impressions, "
    f"{ratio('sum(clicked)', 'sum(shown)')} AS click_rate, "
    f"{ratio('sum(converted)', 'sum(shown)')} AS convert_rate FROM ("
    + _reactions_per_list()
    + f") AS f ALL INNER JOIN ({_LISTS}) AS l USING recommendation_id "
    "GROUP BY policy, model_version ORDER BY impressions DESC"
)

# -- goal 4: security ---------------------------------------------------------------------------

_FLAGS_FILTER = f"{var_in('severity', 'severity')} AND {var_in('principal_type', 'principal_type')}"
_LEAKAGE = f"principal_type = 'staff' AND severity IN ({quoted(LEAKAGE_SEVERITIES)})"
LEAKAGE_INCIDENTS = (
    f"SELECT sum(flags) AS incidents FROM security_flags_1h WHERE {_HOUR} AND {_LEAKAGE}"
)
LEAKAGE_INCIDENTS_TREND = (
    f"SELECT {bucket('bucket')} AS time, sum(flags) AS incidents FROM security_flags_1h "
    f"WHERE {_HOUR} AND {_LEAKAGE} GROUP BY time ORDER BY time"
)
_FLAGS = f"FROM security_flags_1m WHERE {_MINUTE} AND {_FLAGS_FILTER}"
FLAGS_TOTAL = f"SELECT sum(flags) AS n_flags {_FLAGS}"
FLAGS_HIGH = f"SELECT sumIf(flags, severity IN ('high', 'critical')) AS n_high {_FLAGS}"
FLAGS_BY_RULE = (
    f"SELECT {bucket('bucket')} AS time, rule, sum(flags) AS n_flags {_FLAGS} "
    "GROUP BY time, rule ORDER BY time"
)
FLAGS_BY_SEVERITY = (
    f"SELECT {bucket('bucket')} AS time, severity AS level, sum(flags) AS n_flags {_FLAGS} "
    "GROUP BY time, level ORDER BY time"
)
_SEVERITY_RANK = (
    "multiIf(severity = 'critical', 4, severity = 'high', 3, severity = 'medium', 2, 1)"
)
_FLAG_ROWS = f"FROM security_flag FINAL WHERE $__timeFilter(occurred_at) AND {_FLAGS_FILTER}"
TOP_FLAGGED_PRINCIPALS = (
    "SELECT principal_id AS principal, principal_type AS kind, uniqExact(flag_id) AS n_flags, "
    f"arrayElement(['low', 'medium', 'high', 'critical'], max({_SEVERITY_RANK})) AS worst, "
    "arrayStringConcat(arraySort(groupUniqArray(rule)), ', ') AS rules, "
    f"max(occurred_at) AS last_flag {_FLAG_ROWS} "
    "GROUP BY principal, kind ORDER BY n_flags DESC, last_flag DESC LIMIT 20"
)
RECENT_FLAGS = (
    "SELECT occurred_at, severity, rule, principal_id, principal_type, score, explanation "
    f"{_FLAG_ROWS} ORDER BY occurred_at DESC LIMIT 50"
)
_STAFF_ACCESS = (
    f"FROM access_1m WHERE {_MINUTE} AND principal_type = 'staff' "
    f"AND action IN ({quoted(STAFF_RECORD_ACTIONS)})"
)
STAFF_RECORDS = f"SELECT sum(records) AS n_records {_STAFF_ACCESS}"
STAFF_RECORDS_BY_TEAM = (
    f"SELECT {bucket('bucket')} AS time, staff_team AS team, sum(records) AS n_records "
    f"{_STAFF_ACCESS} GROUP BY time, team ORDER BY time"
)
TOP_STAFF_ACCESS = (
    "SELECT principal_id AS staff, any(staff_team) AS team, "
    "countIf(action = 'record_view') AS views, countIf(action = 'record_export') AS exports, "
    "sum(record_count) AS n_records, uniqExact(target_customer_id) AS customers "
    "FROM access_event FINAL WHERE principal_type = 'staff' "
    f"AND action IN ({quoted(STAFF_RECORD_ACTIONS)}) AND $__timeFilter(occurred_at) "
    "GROUP BY staff ORDER BY n_records DESC LIMIT 20"
)
CUSTOMER_ACCESS_BY_ACTION = (
    f"SELECT {bucket('bucket')} AS time, action AS kind, sum(events) AS n_events "
    f"FROM access_1m WHERE {_MINUTE} AND principal_type = 'customer' "
    "AND action IN ('login_success', 'login_failure', 'password_reset', 'device_change') "
    "GROUP BY time, kind ORDER BY time"
)

# -- pipeline health ----------------------------------------------------------------------------

# topics are "<prefix>.<event type>": the variable lists event types, whatever the prefix
_TOPIC_TYPE = "arrayElement(splitByChar('.', {}), -1)"
_OFFSETS = (
    "FROM sink_offsets WHERE $__timeFilter(inserted_at) "
    f"AND {var_in(_TOPIC_TYPE.format('topic'), 'event_type')}"
)
_BATCHES = (
    "FROM sink_batches WHERE $__timeFilter(at) "
    f"AND {var_in(_TOPIC_TYPE.format('target'), 'event_type')}"
)
_LETTERS = (
    "FROM dead_letter FINAL WHERE $__timeFilter(at) "
    f"AND {var_in(_TOPIC_TYPE.format('source_topic'), 'event_type')}"
)
EVENTS_IN = f"SELECT sum(rows) AS n_events {_OFFSETS}"
EVENTS_IN_BY_TOPIC = (
    f"SELECT {bucket('inserted_at')} AS time, topic AS source, sum(rows) AS n_events {_OFFSETS} "
    "GROUP BY time, source ORDER BY time"
)
DEAD_LETTERS = f"SELECT count() AS n_dead_letters {_LETTERS}"
DEAD_LETTERS_BY_REASON = (
    f"SELECT {bucket('at')} AS time, reason AS cause, count() AS n_dead_letters {_LETTERS} "
    "GROUP BY time, cause ORDER BY time"
)
DEAD_LETTERS_TABLE = (
    "SELECT source_topic, reason, step, error_class, count() AS n_dead_letters, "
    f"max(at) AS last_at {_LETTERS} "
    "GROUP BY source_topic, reason, step, error_class ORDER BY n_dead_letters DESC LIMIT 50"
)
INSERT_P95_MS = (
    f"SELECT if(count() > 0, quantile(0.95)(insert_ms), NULL) AS p95_insert_ms {_BATCHES}"
)
DELAY_MAX_MS = f"SELECT if(count() > 0, max(delay_ms_max), NULL) AS max_delay_ms {_BATCHES}"
BATCH_LATENCY = (
    f"SELECT {bucket('at')} AS time, quantile(0.5)(insert_ms) AS insert_p50, "
    "quantile(0.95)(insert_ms) AS insert_p95, max(insert_ms) AS insert_max, "
    f"quantile(0.95)(batch_ms) AS batch_p95 {_BATCHES} GROUP BY time ORDER BY time"
)
BATCH_SIZE = (
    f"SELECT {bucket('at')} AS time, avg(rows) AS rows_avg, max(rows) AS rows_max, "
    f"sum(fenced_rows) AS fenced {_BATCHES} GROUP BY time ORDER BY time"
)
END_TO_END_DELAY = (
    f"SELECT {bucket('at')} AS time, {ratio('sum(delay_ms_sum)', 'sum(rows)')} AS delay_avg_ms, "
    f"max(delay_ms_max) AS delay_max_ms {_BATCHES} GROUP BY time ORDER BY time"
)
SINK_BY_TOPIC = (
    "SELECT target AS source, count() AS batches, sum(rows) AS n_rows, "
    "sum(fenced_rows) AS fenced, sum(dead_letters) AS n_dead_letters, "
    "countIf(attempts > 1) AS retried, "
    f"round({ratio('sum(delay_ms_sum)', 'sum(rows)')}) AS delay_avg_ms, "
    f"max(delay_ms_max) AS delay_max_ms, max(at) AS last_batch {_BATCHES} "
    "GROUP BY source ORDER BY n_rows DESC"
)
SINK_WORKERS = (
    "SELECT worker AS instance, group_id AS consumer_group, count() AS batches, "
    f"sum(rows) AS n_rows, max(attempts) AS max_attempts, max(at) AS last_batch {_BATCHES} "
    "GROUP BY instance, consumer_group ORDER BY last_batch DESC"
)
