"""Publishing a simulation without a broker: pacing on the real clock, counting, the CLI."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from cxstream.simulate import ListLabelSink, SimulationConfig, generate, parse_start
from cxstream.simulate.cli import simulate
from cxstream.simulate.config import HOUR_MS
from cxstream.simulate.labels import read_labels
from cxstream.simulate.pacing import SimulatedClock, TokenBucket
from cxstream.simulate.publish import EncodeOnlySink, publish
from streams.codec import AvroCodec
from streams.registry import EmbeddedRegistry

START = parse_start("2026-12-01T09:00:00+08:00")


@pytest.fixture(scope="module")
def small() -> SimulationConfig:
    return SimulationConfig(start_ms=START, duration_ms=2 * HOUR_MS, customers=80, seed=3)


def test_token_bucket_holds_the_rate_on_the_wall_clock() -> None:
    bucket = TokenBucket(2000.0)
    started = time.monotonic()
    for _ in range(600):
        bucket.take()
    elapsed = time.monotonic() - started
    # 600 events at 2000/s from an empty bucket, less the final unslept debt (< 2 ms)
    assert elapsed >= 600 / 2000.0 - 0.005
    assert elapsed < 1.5


def test_simulated_clock_maps_simulated_to_wall_time() -> None:
    clock = SimulatedClock(36_000.0)  # ten simulated hours per wall second
    started = time.monotonic()
    clock.wait(START)
    clock.wait(START + HOUR_MS)  # one simulated hour: a tenth of a second
    clock.wait(START + HOUR_MS // 2)  # late events never hold publishing back
    elapsed = time.monotonic() - started
    assert 0.09 <= elapsed < 0.5


def test_pacing_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0)
    with pytest.raises(ValueError, match="speedup"):
        SimulatedClock(-1)


def test_publish_sends_every_generated_event_once(small: SimulationConfig) -> None:
    expected = Counter(name for name, _ in generate(small))
    sink = EncodeOnlySink(AvroCodec(EmbeddedRegistry()))
    labels = ListLabelSink()
    report = publish(small, sink, labels=labels)
    assert report.per_type == dict(expected)
    assert report.sent == sum(expected.values())
    assert sink.bytes > report.sent * 40  # really encoded
    assert report.labels == len(labels.labels) == sum(small.scenario_counts().values())
    assert not report.interrupted


def test_publish_respects_the_rate_cap(small: SimulationConfig) -> None:
    capped = SimulationConfig(
        start_ms=START, duration_ms=None, max_events=1500, customers=80, seed=3
    )
    report = publish(capped, EncodeOnlySink(AvroCodec(EmbeddedRegistry())), rate=5000.0)
    assert report.sent == 1500
    # 1500 events at 5000/s, less the final unslept debt (< 2 ms)
    assert report.elapsed_s >= 1500 / 5000.0 - 0.005
    assert report.events_per_second <= 5000 * 1.02


def test_cli_dry_run_reports_what_the_generator_makes(tmp_path: Path) -> None:
    labels_path = tmp_path / "labels.jsonl"
    args = [
        "--customers", "60", "--staff", "10", "--seed", "9", "--duration", "3h",
        "--start", "2026-12-01T09:00:00+08:00", "--dry-run", "--json",
        "--labels", str(labels_path), "--scenario", "brute_force=2",
    ]  # fmt: skip
    result = CliRunner().invoke(simulate, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    config = SimulationConfig(
        start_ms=START, duration_ms=3 * HOUR_MS, customers=60, staff=10, seed=9,
        scenarios={"brute_force": 2},
    )  # fmt: skip
    labels = ListLabelSink()
    expected = Counter(name for name, _ in generate(config, labels))
    assert summary["per_type"] == dict(sorted(expected.items()))
    assert summary["dry_run"] is True
    assert summary["config"]["start_ms"] == START
    rows = read_labels(labels_path)
    assert [r["event_ids"] for r in rows] == [label.event_ids for label in labels.labels]
    assert [r["scenario"] for r in rows] == ["brute_force", "brute_force"]


def test_cli_prints_a_plain_summary_with_a_replay_line() -> None:
    args = [
        "--customers", "30", "--staff", "5", "--events", "500", "--dry-run", "--no-scenarios",
        "--start", "2026-12-01T09:00:00Z",
    ]  # fmt: skip
    result = CliRunner().invoke(simulate, args)
    assert result.exit_code == 0, result.output
    assert "500 events encoded (dry run)" in result.output
    assert "customer_registered" in result.output
    assert "replay: --seed 0 --start 2026-12-01T09:00:00+00:00" in result.output
    assert "--events 500" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "phishing=1"], "TYPE=COUNT"),
        (["--scenario", "brute_force"], "TYPE=COUNT"),
        (["--rate", "-5"], "--rate"),
        (["--speedup", "0"], "--speedup"),
    ],
)
def test_cli_rejects_bad_options(args: list[str], message: str) -> None:
    result = CliRunner().invoke(simulate, [*args, "--dry-run", "--duration", "1h"])
    assert result.exit_code == 2
    assert message in result.output
