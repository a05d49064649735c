"""``cxstream soak``: the platform under injected faults for a while, then exact checks."""

from __future__ import annotations

import click

from cxstream.faults.faults import FAULTS

_DEFAULT_FAULTS = ("worker-kill", "kafka", "clickhouse", "redis", "rebalance")


@click.command()
@click.option("--duration", type=float, default=1800, show_default=True, help="Traffic seconds.")
@click.option("--rate", type=float, default=500, show_default=True, help="Events/s published.")
@click.option("--customers", type=int, default=5_000, show_default=True)
@click.option("--seed", type=int, default=8, show_default=True, help="Traffic and fault schedule.")
@click.option(
    "--fault",
    "faults",
    multiple=True,
    type=click.Choice(sorted(FAULTS)),
    help="Fault to inject (repeatable; default: all).",
)
@click.option("--kills", type=int, default=5, show_default=True, help="Worker SIGKILLs.")
@click.option(
    "--processor",
    "processors",
    multiple=True,
    help="Processor the workers run (repeatable; default: all) -- to isolate one.",
)
@click.option("--report-every", type=float, default=60, show_default=True, help="Status seconds.")
@click.option("--settle-timeout", type=float, default=300, show_default=True)
@click.option("--memory-limit-mib", type=float, default=1536, show_default=True)
@click.option("--namespace", default="cxsoak", show_default=True, help="Prefix of run namespaces.")
@click.option("--keep", is_flag=True, help="Keep the run's topics and database after a pass.")
def soak(
    duration: float,
    rate: float,
    customers: int,
    seed: int,
    faults: tuple[str, ...],
    kills: int,
    processors: tuple[str, ...],
    report_every: float,
    settle_timeout: float,
    memory_limit_mib: float,
    namespace: str,
    keep: bool,
) -> None:
    """Publish simulated traffic at a steady rate while faults are injected, then verify.

    Uses the native local stack (started if needed; point CX_KAFKA__BOOTSTRAP_SERVERS and
    CX_REDIS__URL at it as for `cxstream demo`); its Kafka, Redis and ClickHouse are stopped
    and restarted by the faults. Prints a status line every --report-every seconds
    (produced, lag per group, dead letters, resident memory), then what was injected and
    every check; exits 1 if a check failed.
    """
    import faulthandler
    import logging

    from cxstream.faults.faults import Fault, StackControl, WorkerKills
    from cxstream.faults.scenario import ScenarioConfig
    from cxstream.faults.suite import run
    from cxstream.settings import load_settings
    from cxstream.stack import manager

    faulthandler.enable()  # a native crash in a client library must leave a trace
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # the stack's health polls while ClickHouse restarts log a traceback per attempt
    logging.getLogger("clickhouse_driver").setLevel(logging.ERROR)
    base = load_settings()
    manager.up(base)
    chosen: list[Fault] = []
    for name in faults or _DEFAULT_FAULTS:
        chosen.append(WorkerKills(times=kills) if name == "worker-kill" else FAULTS[name]())
    config = ScenarioConfig(
        events=int(duration * rate),
        rate=rate,
        customers=customers,
        seed=seed,
        namespace=namespace,
        log_dir=base.stack.home.parent / "faults" / "logs",
        processors=processors,
    )
    verdict = run(
        base,
        config,
        chosen,
        StackControl(base),
        settle_timeout=settle_timeout,
        memory_limit_mib=memory_limit_mib,
        status_every=report_every,
        keep=keep,
        say=click.echo,
    )
    for line in verdict.lines():
        click.echo(line)
    if not verdict.ok:
        raise click.ClickException("the platform did not survive the faults intact")
