"""The ``cxstream demo`` command: stack, children, simulator, live view, final checks."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import click

from cxstream.demo.children import Child, OnCall, running, spawn, stop, tail
from cxstream.demo.namespace import Namespace, child_env, clean_slate, demo_settings
from cxstream.settings import Settings, load_settings


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def publish_poison(settings: Settings, count: int) -> None:
    """Bad bytes that must reach the dead-letter topic without stopping anything."""
    from confluent_kafka import Producer

    from streams.kafka_config import confluent_config

    pills = [b"\x07not-avro", b"\x00\x00\x00\xff\xffgarbage", b"\x00\x00"]
    producer = Producer(confluent_config(settings))
    for i in range(count):
        producer.produce(settings.topic("channel_interaction"), pills[i % len(pills)], b"poison")
    producer.flush(10)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, child: Child, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.running:
            raise click.ClickException(f"{child.name} exited:\n{tail(child.log)}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise click.ClickException(f"{child.name} not ready after {timeout:.0f} s:\n{tail(child.log)}")


@click.command()
@click.option("--events", type=int, default=100_000, show_default=True, help="Events to publish.")
@click.option("--rate", type=float, default=5_000, show_default=True, help="Events/s (0: max).")
@click.option("--customers", type=int, default=5_000, show_default=True)
@click.option("--seed", type=int, default=None, help="Simulator seed (default: new each run).")
@click.option("--poison", type=int, default=3, show_default=True, help="Poison pills to send.")
@click.option("--keep-running", is_flag=True, help="Keep the platform up until Ctrl-C.")
@click.option("--settle-timeout", type=float, default=120, show_default=True)
@click.option("--api-port", type=int, default=None, help="HTTP API port (default: a free one).")
@click.option(
    "--namespace",
    default="cxdemo",
    show_default=True,
    help="Topic prefix and ClickHouse database of the demo (dropped and recreated each run).",
)
def demo(
    events: int,
    rate: float,
    customers: int,
    seed: int | None,
    poison: int,
    keep_running: bool,
    settle_timeout: float,
    api_port: int | None,
    namespace: str,
) -> None:
    """Run the whole platform end to end: stack, processors, sink, API, on-call, simulator."""
    import logging
    import random

    from rich.console import Console

    from cxstream.stack import manager
    from sinks.clickhouse.backend import make_backend
    from sinks.clickhouse.migrations import migrate
    from streams.topics import ensure_topics, platform_topics

    # one line per HTTP poll of the worker would bury the live view
    logging.getLogger("httpx").setLevel(logging.WARNING)
    console = Console()
    base = load_settings()
    ns = Namespace(namespace, namespace, time.strftime("%Y%m%d%H%M%S"))
    log_dir = base.stack.home.parent / "demo" / "logs"
    settings = demo_settings(base, ns, log_dir)
    env = child_env(settings, ns)
    seed = random.SystemRandom().randrange(1_000_000) if seed is None else seed
    oncall = OnCall.create(free_port(), log_dir, ns.run_id)
    api_port = api_port or free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    env.update(oncall.env())
    env.update(
        {
            "CX_API__PORT": str(api_port),
            "CX_API__WORKER_URL": f"http://127.0.0.1:{settings.worker.web_port}",
        }
    )

    console.print("[bold]1/5 local stack[/] (Kafka, Redis, ClickHouse)")
    for result in manager.up(settings, on_progress=lambda m: console.print(f"  {m}")):
        console.print(f"  {result.name}: {'started' if result.started else 'already running'}")
    console.print(f"[bold]2/5 topics and migrations[/] (namespace {namespace!r})")
    dropped = clean_slate(settings, ns)
    console.print(f"  previous run: {dropped} topics and database {ns.database!r} dropped")
    report = ensure_topics(settings, platform_topics(settings))
    console.print(
        f"  topics: {len(report.created)} created, {len(report.updated)} updated, "
        f"{len(report.unchanged)} unchanged"
    )
    backend = make_backend(settings)
    migration = migrate(backend)
    backend.close()
    console.print(
        f"  ClickHouse ({backend.kind}): {len(migration.applied)} migrations applied, "
        f"{len(migration.columns_added)} columns added"
    )

    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    console.print(f"[bold]3/5 platform[/] (logs in {log_dir})")
    started = time.time()
    children = [
        spawn("receiver", oncall.receiver_args(), env, log_dir),
        spawn("worker", ["worker", "--no-ensure-topics"], env, log_dir),
        spawn("sink", ["sink"], env, log_dir),
        spawn("notifier", ["notify", "serve"], env, log_dir),
        spawn("api", ["api"], env, log_dir),
    ]
    with running(children):
        wait_ready(f"{api_url}/healthz", children[-1])
        wait_ready(f"http://127.0.0.1:{settings.worker.web_port}/v1/stats", children[1], 90)
        console.print(f"  worker, sink, notifier, API ({api_url}) and on-call receiver up")
        _run(console, settings, ns, oncall, api_url, children, log_dir, events, rate,
             customers, seed, poison, keep_running, settle_timeout, started)  # fmt: skip
    console.print("stopped the platform; the stack keeps running (`cxstream stack down`)")


def _run(
    console: Any,
    settings: Settings,
    ns: Namespace,
    oncall: OnCall,
    api_url: str,
    children: list[Child],
    log_dir: Path,
    events: int,
    rate: float,
    customers: int,
    seed: int,
    poison: int,
    keep_running: bool,
    settle_timeout: float,
    started: float,
) -> None:
    from rich.live import Live

    from cxstream.demo.checks import final_checks
    from cxstream.demo.observe import Observer, Snapshot, consumer_groups
    from cxstream.demo.view import render, status_line

    env = child_env(settings, ns)
    observer = Observer(settings, consumer_groups(settings, ns), oncall, api_url)
    simulator: Child | None = None
    try:
        console.print(f"[bold]4/5 simulator[/]: {events:,} events at {rate:,.0f}/s, seed {seed}")
        publish_poison(settings, poison)
        simulator = spawn(
            "simulator",
            ["simulate", "--events", str(events), "--rate", str(rate), "--customers",
             str(customers), "--seed", str(seed), "--labels",
             str(log_dir / "scenario-labels.jsonl")],
            env,
            log_dir,
        )  # fmt: skip
        snap = observer.snapshot()
        previous: Snapshot | None = None
        settled_since: float | None = None
        quiet_since: float | None = None
        live_view = console.is_terminal
        last_line = 0.0
        with Live(
            render(snap, previous, children, simulator, started),
            console=console,
            auto_refresh=live_view,
            transient=not live_view,
        ) as live:
            while True:
                time.sleep(1.0)
                previous, snap = snap, observer.snapshot()
                if live_view:
                    live.update(render(snap, previous, children, simulator, started))
                elif time.time() - last_line >= 5:
                    # logs and CI get a plain line instead of a redrawn table
                    console.print(status_line(snap, started))
                    last_line = time.time()
                for child in children:
                    if not child.running:
                        raise click.ClickException(
                            f"{child.name} exited ({child.process.returncode}):\n" + tail(child.log)
                        )
                if simulator.process.poll() not in (None, 0):
                    raise click.ClickException("simulator failed:\n" + tail(simulator.log))
                if simulator.process.poll() == 0 and settled_since is None:
                    settled_since = time.time()
                # done when nothing moved for 3 s with every consumer caught up
                caught_up = all(lag == 0 for lag in snap.lag.values())
                moved = previous is None or snap.produced != previous.produced
                if settled_since and caught_up and not moved:
                    quiet_since = quiet_since or time.time()
                    if time.time() - quiet_since >= 3:
                        break
                else:
                    quiet_since = None
                if settled_since and time.time() - settled_since > settle_timeout:
                    break  # the checks below say what did not arrive
        snap = observer.snapshot(full=True)
        console.print(render(snap, None, children, simulator, started))
        console.print("[bold]5/5 checks[/] against what was produced")
        checks = final_checks(observer, snap, poison)
        for ok, text in checks:
            console.print(f"  {'[green]ok[/]  ' if ok else '[red]FAIL[/]'} {text}")
        if keep_running:
            console.print("platform running; Ctrl-C to stop")
            while all(c.running for c in children):
                time.sleep(1)
        if not all(ok for ok, _ in checks):
            raise click.ClickException("results do not match what was produced")
    except KeyboardInterrupt:
        console.print("stopping (Ctrl-C)...")
    finally:
        if simulator is not None:
            stop(simulator)
        observer.close()
