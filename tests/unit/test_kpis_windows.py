"""KPI windows in event time: bucket assignment, closing, late events, replays (no services)."""

from __future__ import annotations

from typing import Any

from processors.kpis.definitions import BY_KPI, by_source
from processors.kpis.windows import (
    MINUTE_MS,
    Measurement,
    SourcePartition,
    WindowConfig,
    minute_of,
)
from streams.batching import InputEvent

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
KPIS = by_source()["channel_interaction"]


def request(offset: int, at_ms: int, channel: str = "web", action: str = "information_request"):
    record: dict[str, Any] = {
        "event_id": f"e{offset}",
        "occurred_at": at_ms,
        "channel": channel,
        "action": action,
    }
    return InputEvent("channel_interaction", record, 1, b"k", "t", 2, offset, at_ms, None)


def minutes(measurements: list[Measurement]) -> dict[int, tuple[int, int, int]]:
    return {
        (m.window_start - T0) // MINUTE_MS: (m.numerator, m.denominator, m.revision)
        for m in measurements
        if m.window == "minute"
    }


def run(part: SourcePartition, items: list[InputEvent]) -> list[Measurement]:
    plan = part.plan(items)
    part.commit(plan)
    return plan.measurements


def test_minute_of_is_the_utc_minute_start() -> None:
    assert minute_of(T0) == T0
    assert minute_of(T0 + 59_999) == T0
    assert minute_of(T0 + 60_000) == T0 + 60_000


def test_events_count_in_the_minute_of_their_event_time_not_arrival() -> None:
    part = SourcePartition(2, KPIS, WindowConfig(windows=("minute",), lateness_ms=30_000))
    # arrival order 0, 2, 1 (out of order); minute 1 gets an offline request
    out = run(
        part,
        [
            request(0, T0 + 10_000),
            request(1, T0 + 150_000),
            request(2, T0 + 70_000, channel="branch"),
        ],
    )
    # stream time 02:30 minus 30 s lateness: minutes 0 and 1 closed, minute 2 still open
    assert minutes(out) == {0: (1, 1, 0), 1: (0, 1, 2)}
    assert all(m.partition == 2 and m.kpi == "online_share" for m in out)
    # a non-request action is not in the KPI; the minute closes once time passes 03:30
    out = run(part, [request(3, T0 + 160_000, action="search"), request(4, T0 + 215_000)])
    assert minutes(out) == {2: (1, 1, 3)}


def test_a_late_event_republishes_its_minute_with_a_higher_revision() -> None:
    part = SourcePartition(2, KPIS, WindowConfig(windows=("minute",), lateness_ms=0))
    run(part, [request(0, T0 + 1_000), request(1, T0 + 61_000)])
    out = run(part, [request(2, T0 + 5_000, channel="phone"), request(3, T0 + 125_000)])
    assert minutes(out) == {0: (1, 2, 2), 1: (1, 1, 1)}


def test_events_older_than_the_longest_window_are_dropped_as_too_late() -> None:
    part = SourcePartition(2, KPIS, WindowConfig(windows=("minute", "hour"), lateness_ms=0))
    run(part, [request(0, T0), request(1, T0 + 2 * 3_600_000)])
    plan = part.plan([request(2, T0 + 30 * MINUTE_MS)])
    assert plan.too_late == 1
    assert plan.applied == 0
    assert plan.measurements == []
    # the bucket of minute 0 was deleted once the closed edge was an hour past it
    assert plan.writes.keys() == {"2:meta"}
    assert T0 not in part.buckets


def test_rolling_windows_sum_aligned_minute_buckets_every_step() -> None:
    config = WindowConfig(windows=("hour",), lateness_ms=0, step_ms=5 * MINUTE_MS)
    part = SourcePartition(2, KPIS, config)
    events = [request(i, T0 + i * MINUTE_MS, "web" if i % 3 else "phone") for i in range(70)]
    out = run(part, events)
    hours = {m.window_start + 3_600_000: (m.numerator, m.denominator) for m in out}
    # ends every 5 min from 00:05 to the closed edge 01:09 -> 01:05
    assert sorted(hours) == [T0 + k * 5 * MINUTE_MS for k in range(1, 14)]
    for end, (numerator, denominator) in hours.items():
        inside = [i for i in range(70) if end - 3_600_000 <= T0 + i * MINUTE_MS < end]
        assert denominator == len(inside)
        assert numerator == sum(1 for i in inside if i % 3)


def test_a_jump_in_event_time_publishes_at_most_the_catch_up_windows() -> None:
    config = WindowConfig(windows=("minute", "hour"), lateness_ms=0, max_catchup=3)
    part = SourcePartition(2, KPIS, config)
    out = run(part, [request(0, T0), request(1, T0 + 10 * MINUTE_MS)])
    assert sorted(minutes(out)) == [7, 8, 9]
    assert sorted((m.window_start - T0) // MINUTE_MS for m in out if m.window == "hour") == [
        -52,
        -51,
        -50,
    ]


def test_replay_of_an_applied_batch_counts_nothing_twice() -> None:
    part = SourcePartition(2, KPIS, WindowConfig(windows=("minute",), lateness_ms=0))
    batch = [request(i, T0 + i * 20_000) for i in range(6)]
    first = part.plan(batch)
    # crash after the measurements were sent, before the state was written: same output again
    again = part.plan(batch)
    assert again.measurements == first.measurements
    part.commit(first)
    # crash after the state was written, before the offsets were committed: nothing new
    replay = part.plan(batch)
    assert replay.replays == len(batch)
    assert replay.applied == 0
    assert replay.measurements == []
    assert part.buckets[T0]["counts"] == {"online_share": [3, 3]}


def test_state_reloaded_from_its_table_entries_continues_where_it_stopped() -> None:
    config = WindowConfig(windows=("minute",), lateness_ms=0)
    part = SourcePartition(2, KPIS, config)
    table: dict[str, Any] = {}
    for batch in ([request(0, T0), request(1, T0 + 30_000)], [request(2, T0 + 61_000)]):
        plan = part.plan(batch)
        for key, value in plan.writes.items():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        part.commit(plan)
    recovered = SourcePartition(2, KPIS, config)
    for key, value in table.items():
        recovered.load(key.split(":", 1)[1], value)
    batch = [request(2, T0 + 61_000), request(3, T0 + 121_000)]
    assert recovered.plan(batch).measurements == part.plan(batch).measurements
    plan = recovered.plan(batch)
    # offset 2 is a replay of what minute 1 already holds
    assert plan.replays == 1
    assert minutes(plan.measurements) == {1: (1, 1, 2)}


def test_only_the_kpis_of_the_source_are_measured() -> None:
    assert {k.key for k in KPIS} == {"online_share"}
    assert BY_KPI["online_share"].source == "channel_interaction"
