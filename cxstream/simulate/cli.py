"""``cxstream simulate``: publish seeded synthetic bank traffic to Kafka."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cxstream.errors import ConfigurationError
from cxstream.simulate.config import (
    DAY_MS,
    MINUTE_MS,
    SCENARIO_TYPES,
    format_duration,
    parse_duration,
    parse_start,
)

if TYPE_CHECKING:
    from cxstream.settings import Settings
    from cxstream.simulate.config import SimulationConfig
    from cxstream.simulate.publish import PublishReport

#: erasure requests per customer per day with ``--erasures``
ERASURE_RATE = 0.0005


def _scenario_counts(raw: tuple[str, ...], none: bool) -> dict[str, int] | None:
    if none:
        return dict.fromkeys(SCENARIO_TYPES, 0)
    if not raw:
        return None
    counts = dict.fromkeys(SCENARIO_TYPES, 0)
    for item in raw:
        name, sep, value = item.partition("=")
        if not sep or name not in SCENARIO_TYPES or not value.isdigit():
            raise click.BadParameter(
                f"{item!r}: expected TYPE=COUNT with TYPE one of {', '.join(SCENARIO_TYPES)}",
                param_hint="--scenario",
            )
        counts[name] = int(value)
    return counts


@click.command()
@click.option("--customers", default=1000, show_default=True, help="Customers in the bank.")
@click.option("--staff", default=50, show_default=True, help="Staff members (5 teams).")
@click.option("--seed", default=0, show_default=True, help="Same seed + options = same events.")
@click.option(
    "--start",
    default=None,
    help="Simulated start: ISO 8601 (naive = UTC) or epoch ms. Default: now minus the span.",
)
@click.option(
    "--duration",
    default=None,
    help="Simulated span, e.g. 1d, 2h, 1d12h (default 1d unless only --events is given).",
)
@click.option("--events", "max_events", type=int, default=None, help="Stop after N events.")
@click.option("--rate", default=0.0, show_default=True, help="Events per second cap (0 = no cap).")
@click.option(
    "--speedup",
    type=float,
    default=None,
    help="Tie simulated to wall time: 1 = real time, 60 = an hour per minute. "
    "Default: publish as fast as --rate allows.",
)
@click.option(
    "--labels",
    "labels_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write ground-truth labels of injected scenarios here (JSON lines).",
)
@click.option("--unanswered-share", default=0.08, show_default=True, help="Feedback left >24 h.")
@click.option(
    "--late-share", default=0.05, show_default=True, help="Feedback published hours late."
)
@click.option("--erasures/--no-erasures", default=False, help="Include rare erasure requests.")
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    metavar="TYPE=COUNT",
    help=f"Scenarios to inject (repeatable; types: {', '.join(SCENARIO_TYPES)}). "
    "Default: about 2 brute force, 1 stuffing, 2 impossible travel, 1 bulk access per day.",
)
@click.option("--no-scenarios", is_flag=True, help="Inject no security scenarios.")
@click.option("--dry-run", is_flag=True, help="Generate and encode, but send nothing.")
@click.option(
    "--closed-loop",
    "closed_loop",
    type=int,
    default=None,
    metavar="VISITS",
    help="After the traffic (generated without its own recommendation lists), VISITS visits "
    "of the same customers react to the lists cxstream serves in Redis (cxstream.simulate.loop).",
)
@click.option(
    "--visit-rate",
    default=100.0,
    show_default=True,
    help="Closed-loop visits per second cap (0 = no cap).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def simulate(
    customers: int,
    staff: int,
    seed: int,
    start: str | None,
    duration: str | None,
    max_events: int | None,
    rate: float,
    speedup: float | None,
    labels_path: Path | None,
    unanswered_share: float,
    late_share: float,
    erasures: bool,
    scenarios: tuple[str, ...],
    no_scenarios: bool,
    dry_run: bool,
    closed_loop: int | None,
    visit_rate: float,
    as_json: bool,
) -> None:
    """Publish realistic synthetic traffic of a bank to the cxstream topics.

    Events are generated over the simulated span and, by default, published as fast as --rate
    allows; occurred_at always carries simulated time. Re-run with the printed --start and the
    same options to get the very same events.
    """
    from cxstream.settings import load_settings
    from cxstream.simulate.config import SimulationConfig
    from cxstream.simulate.labels import JsonlLabelSink
    from cxstream.simulate.progress import NoProgress, Progress, RichProgress
    from cxstream.simulate.publish import dry_run as run_dry
    from cxstream.simulate.publish import publish_to_kafka

    if rate < 0:
        raise click.BadParameter("must be >= 0", param_hint="--rate")
    if speedup is not None and speedup <= 0:
        raise click.BadParameter("must be > 0", param_hint="--speedup")
    duration_ms = parse_duration(duration) if duration else None
    if duration_ms is None and max_events is None:
        duration_ms = DAY_MS
    base = SimulationConfig(
        start_ms=0,
        duration_ms=duration_ms,
        max_events=max_events,
        seed=seed,
        customers=customers,
        staff=staff,
        unanswered_share=unanswered_share,
        late_feedback_share=late_share,
        erasure_per_customer_per_day=ERASURE_RATE if erasures else 0.0,
        scenarios=_scenario_counts(scenarios, no_scenarios),
    )
    if closed_loop is not None:
        # in the closed loop the lists come from the recommender, not from the generator
        base = dataclasses.replace(base, recommendation_per_online_visit=0.0)
    if start is None:
        # default: the span ends now; floored to the minute so that it is easy to repeat
        start_ms = (int(time.time() * 1000) - base.span_ms()) // MINUTE_MS * MINUTE_MS
    else:
        start_ms = parse_start(start)
    config = dataclasses.replace(base, start_ms=start_ms)
    settings = load_settings()

    tty = sys.stdout.isatty()
    progress: Progress = RichProgress("cxstream simulate") if tty else NoProgress()
    runner = run_dry if dry_run else publish_to_kafka
    if labels_path is not None:
        with JsonlLabelSink(labels_path) as sink:
            report = runner(settings, config, rate=rate, speedup=speedup, labels=sink,
                            progress=progress)  # fmt: skip
    else:
        report = runner(settings, config, rate=rate, speedup=speedup, progress=progress)

    summary = report.to_json()
    if closed_loop is not None and not dry_run and not report.interrupted:
        summary["closed_loop"] = _closed_loop(settings, config, closed_loop, visit_rate, report)
    summary["labels_path"] = str(labels_path) if labels_path is not None else None
    summary["topic_prefix"] = settings.kafka.topic_prefix
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        _print_summary(summary, per_type=not tty)  # the live table already showed the types
    if report.interrupted:
        sys.exit(130)


def _closed_loop(
    settings: Settings, config: SimulationConfig, visits: int, rate: float, report: PublishReport
) -> dict[str, int]:
    from cxstream.simulate.loop import ClosedLoop, run_against_redis
    from streams.codec import build_codec
    from streams.producer import EventProducer

    loop = ClosedLoop(config)
    # event time goes on after the generated traffic
    loop.now_ms = max(loop.now_ms, report.last_sim_ms or config.start_ms)
    with EventProducer(settings, build_codec(settings)) as producer:
        return run_against_redis(loop, settings, producer, visits, rate=rate)


def _print_summary(summary: dict[str, object], *, per_type: bool = True) -> None:
    config = summary["config"]
    if not isinstance(config, dict):
        raise ConfigurationError("simulate: summary without its config")
    duration = config["duration_ms"]
    verb = "encoded (dry run)" if summary["dry_run"] else f"sent to {summary['topic_prefix']}.*"
    click.echo(
        f"{summary['sent']:,} events {verb} in {summary['elapsed_s']} s "
        f"({summary['events_per_second']:,} events/s)"
        + (" - interrupted" if summary["interrupted"] else "")
    )
    counts = summary["per_type"]
    if per_type and isinstance(counts, dict):
        for name, count in counts.items():
            click.echo(f"  {name:<26} {count:>10,}")
    labels = f"{summary['labels']} scenario labels"
    if summary["labels_path"]:
        labels += f" -> {summary['labels_path']}"
    click.echo(labels)
    loop = summary.get("closed_loop")
    if isinstance(loop, dict):
        click.echo(
            f"closed loop: {loop['visits']:,} visits, {loop['served_visits']:,} with a served "
            f"list, {loop['events']:,} reaction events"
        )
    click.echo(
        f"replay: --seed {config['seed']} --start {config['start']} --customers "
        f"{config['customers']} --staff {config['staff']}"
        + (f" --duration {format_duration(duration)}" if isinstance(duration, int) else "")
        + (f" --events {config['max_events']}" if config["max_events"] else "")
    )
