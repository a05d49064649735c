"""The pure parts of ``cxstream bench pipeline``: percentiles, ratios, lag rates, the live plan."""

from __future__ import annotations

import io
import json
from pathlib import Path

from cxstream.bench.pipeline_live import HOUR_MS, build_plan
from cxstream.bench.pipeline_receiver import StampedLines
from cxstream.bench.pipeline_stats import LagRate, percentiles_ms, ratio
from cxstream.settings import Settings
from streams.codec import build_codec


def test_percentiles_are_nearest_rank_in_ms() -> None:
    delays = [i / 1000 for i in range(1, 101)]  # 1 .. 100 ms, shuffled order must not matter
    figures = percentiles_ms(list(reversed(delays)))
    assert figures == {"p50_ms": 50.0, "p99_ms": 99.0, "max_ms": 100.0, "n": 100}
    assert percentiles_ms([0.25]) == {"p50_ms": 250.0, "p99_ms": 250.0, "max_ms": 250.0, "n": 1}
    assert percentiles_ms([])["p99_ms"] is None


def test_ratio_is_none_without_both_figures() -> None:
    assert ratio(30_000, 120_000) == 0.25
    assert ratio(None, 120_000) is None
    assert ratio(30_000, 0) is None


def test_lag_rate_counts_between_first_commit_and_zero_lag() -> None:
    meter = LagRate(total=10_000)
    assert not meter.add(0.0, None)  # nothing committed yet
    assert not meter.add(1.0, 10_000)  # joined, nothing processed
    assert not meter.add(2.0, 8_000)  # first commit point: 8,000 left
    assert not meter.add(3.0, 4_000)
    assert meter.add(4.0, 0)
    assert meter.events_per_s == 8_000 / 2.0
    assert meter.add(5.0, 0)  # later samples do not move the end
    assert meter.events_per_s == 4_000.0


def test_lag_rate_is_unknown_when_everything_landed_in_one_commit() -> None:
    meter = LagRate(total=500)
    assert meter.add(1.0, 0)
    assert meter.events_per_s is None


def test_plan_places_sla_deadlines_bursts_and_probes() -> None:
    settings = Settings()
    filler = [
        ("transaction", {"event_id": "t", "occurred_at": 1}),
        ("chat_session", {"event_id": "c", "occurred_at": 1}),
    ]
    start = 1_800_000_000_000
    plan = build_plan(
        settings,
        filler,
        tag="t1",
        count=1000,
        sample_every=50,
        sla_items=4,
        bursts=2,
        start_ms=start,
        duration_s=25,
    )
    kinds = [kind for _, _, kind in plan.items]
    failures = settings.security.brute_force_failures
    assert kinds[:4] == ["sla"] * 4
    assert kinds.count("burst_last") == 2
    assert kinds.count("burst") == 2 * (failures - 1)
    # slots 250 and 750 are bursts; every other 50th slot is a probe, the rest filler
    assert kinds.count("probe") == 1000 // 50 - 2
    assert kinds.count("") == 1000 - 1000 // 50
    # a burst is one customer's failures back to back, the last one completes it
    first_burst = kinds.index("burst")
    burst = plan.items[first_burst : first_burst + failures]
    assert {r["principal_id"] for _, r, _ in burst} == {"t1-bf-0"}
    assert burst[-1][2] == "burst_last"
    # SLA items: submitted a warning period before a due time spread over the run
    warn_ms = round(settings.sla.warning_fraction * settings.sla.response_hours * HOUR_MS)
    dues = sorted(plan.sla_due.values())
    assert dues[0] == start + 5_000
    assert dues[-1] < start + 25_000
    for _, record, kind in plan.items[:4]:
        assert kind == "sla"
        assert record["occurred_at"] == plan.sla_due[record["feedback_id"]] - warn_ms
    # filler copies get fresh event ids; the originals stay untouched
    ids = [r["event_id"] for _, r, k in plan.items if k == ""]
    assert len(set(ids)) == len(ids)
    assert filler[0][1]["event_id"] == "t"


def test_plan_records_are_valid_events() -> None:
    settings = Settings()
    codec = build_codec(settings)
    plan = build_plan(
        settings,
        [],
        tag="t2",
        count=200,
        sample_every=1,
        sla_items=1,
        bursts=1,
        start_ms=1_800_000_000_000,
        duration_s=10,
    )
    names = set()
    for name, record, _ in plan.items:
        record = dict(record, occurred_at=record["occurred_at"] or 1_800_000_000_000)
        assert codec.decode(codec.encode(name, record)).record["event_id"] == record["event_id"]
        names.add(name)
    assert names == {"feedback_submitted", "access_event", "channel_interaction"}


def test_receiver_lines_get_an_arrival_stamp() -> None:
    out = io.StringIO()
    lines = StampedLines(out)
    lines.write(json.dumps({"webhook_id": "w1", "data": {"alert_id": "a1"}}) + "\n")
    lines.write("\n")
    written = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(written) == 1
    assert written[0]["data"] == {"alert_id": "a1"}
    assert written[0]["received_at_ms"] > 1_700_000_000_000


def test_profile_breakdown_puts_each_sample_in_one_category() -> None:
    from cxstream.bench.pipeline_profile import IDLE, breakdown, parse

    loop = (
        "BaseEventLoop._run_once (asyncio/base_events.py:1922);Handle._run (asyncio/events.py:80)"
    )
    lane = f"{loop};BatchLane.run (streams/batching.py:330)"
    raw = [
        # a table write inside the security handler: shared machinery, named after its owner
        f"{lane};_on_access (processors/security/engine.py:160);"
        "ManagedUserDict.__setitem__ (faust/tables/table.py:90) 30",
        f"{lane};_on_access (processors/security/engine.py:181);features (x/features.py:68) 10",
        f"{loop};ProducerBuffer._handle_pending (faust/transport/producer.py:125) 20",
        f"{lane};BatchDecoder.decode (streams/batching.py:97) 15",
        f"{loop};_drain_messages (streams/batching.py:449) 5",
        "BaseEventLoop._run_once (asyncio/base_events.py:1907);select (selectors.py:468) 20",
        "not a sample line",
    ]
    stacks = parse(raw)
    assert sum(n for _, n in stacks) == 100
    shares = breakdown(stacks)
    assert shares["table write (serialise, send_soon) [security]"] == 0.375  # 30 of 80 busy
    assert shares["processor security (own code)"] == 0.125
    assert shares["changelog buffer task (ProducerBuffer -> publish)"] == 0.25
    assert shares["lane decode"] == 0.1875
    assert shares["drain loop (messages, tracking)"] == 0.0625
    assert shares[IDLE] == 0.2  # of all samples, and not in the busy shares
    assert round(sum(v for k, v in shares.items() if k != IDLE), 6) == 1.0


def test_profile_figures_are_cpu_us_per_event(tmp_path: Path) -> None:
    from cxstream.bench.pipeline_profile import figures

    path = tmp_path / "profile.txt"
    path.write_text(
        "a (processors/kpis/processor.py:1) 3\n"
        "b (streams/batching.py:97);BatchDecoder.decode (streams/batching.py:97) 1\n"
    )
    out = figures(path, 200.0)
    assert out["us_per_event.processor kpis (own code)"] == 150.0
    assert out["us_per_event.lane decode"] == 50.0
    assert out["us_per_event.total.kpis"] == 150.0
    assert out["us_per_event.total.shared"] == 50.0
    assert "share.lane decode" in figures(path, None)


def test_profile_totals_charge_shared_calls_to_the_calling_processor() -> None:
    from cxstream.bench.pipeline_profile import IDLE, by_processor

    shares = {
        "processor security (own code)": 0.1,
        "table write (serialise, send_soon) [security]": 0.3,
        "emit (encode, send) [kpis]": 0.2,
        "lane decode": 0.15,
        "commit (rest)": 0.25,
        IDLE: 0.5,
    }
    assert by_processor(shares) == {"security": 0.4, "shared": 0.4, "kpis": 0.2}


def test_produced_per_event_leaves_out_the_naive_worker() -> None:
    from cxstream.bench.pipeline import produced_per_event

    out = produced_per_event(
        {"worker-sla-segments-changelog": 50, "alert": 10, "naive-naive_profiles-changelog": 900},
        events=100,
    )
    assert out == {
        "produced_per_event": 0.6,
        "produced_per_event.worker-sla-segments-changelog": 0.5,
        "produced_per_event.alert": 0.1,
    }
    assert produced_per_event({"alert": 1}, events=0) == {}
