"""``cxstream demo``: the main job, end to end on one machine.

Starts the native local stack, applies topics and ClickHouse migrations, runs the Faust worker
and the ClickHouse sink as child processes, publishes simulated bank traffic (plus a few poison
pills to show the dead-letter path) and shows live what each part has done. When the traffic
is in, it checks the results against what was produced and says whether they agree. Ctrl-C
stops everything cleanly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from cxstream.settings import Settings, load_settings


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Snapshot:
    """What the live view shows, read from the real services each refresh."""

    produced: dict[str, int] = field(default_factory=dict)
    lag: dict[str, int | None] = field(default_factory=dict)
    worker: dict[str, Any] | None = None
    clickhouse: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Namespace:
    """Where one demo run lives: its own topics, consumer groups and ClickHouse database.

    Every run starts from a clean slate (the previous run's topics and database are dropped), so
    the final checks compare exact counts with what this run produced.
    """

    topic_prefix: str
    database: str
    run_id: str

    @property
    def worker_group(self) -> str:
        return f"{self.topic_prefix}-worker-{self.run_id}"

    @property
    def sink_group(self) -> str:
        return f"{self.topic_prefix}-sink-{self.run_id}"


def _child_env(settings: Settings, ns: Namespace) -> dict[str, str]:
    """Children read the same settings; the demo points them at the stack and its namespace."""
    env = dict(os.environ)
    env.update(
        {
            "CX_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "CX_KAFKA__TOPIC_PREFIX": ns.topic_prefix,
            "CX_WORKER__APP_ID": ns.worker_group,
            "CX_CLICKHOUSE__DATABASE": ns.database,
            "CX_CLICKHOUSE__SINK_GROUP_ID": ns.sink_group,
        }
    )
    if settings.clickhouse.host is not None:
        env["CX_CLICKHOUSE__HOST"] = settings.clickhouse.host
        env["CX_CLICKHOUSE__PORT"] = str(settings.clickhouse.port)
    return env


def _demo_settings(settings: Settings, ns: Namespace) -> Settings:
    """The settings the children get, as this process sees them.

    Without a configured ClickHouse server the demo uses the stack's server: embedded chdb can be
    opened by one process only, and the sink and this view both need it.
    """
    clickhouse = settings.clickhouse.model_copy(update={"database": ns.database})
    if clickhouse.host is None:
        clickhouse = clickhouse.model_copy(
            update={"host": "127.0.0.1", "port": settings.stack.clickhouse_port}
        )
    return settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"topic_prefix": ns.topic_prefix}),
            "worker": settings.worker.model_copy(update={"app_id": ns.worker_group}),
            "clickhouse": clickhouse.model_copy(update={"sink_group_id": ns.sink_group}),
        }
    )


def _clean_slate(settings: Settings, ns: Namespace) -> int:
    """Drop the previous demo runs' topics (incl. Faust changelogs) and database."""
    from sinks.clickhouse.backend import make_backend
    from streams.topics import admin_client, delete_topics

    existing = admin_client(settings).list_topics(timeout=10).topics
    stale = [t for t in existing if t.startswith((f"{ns.topic_prefix}.", f"{ns.topic_prefix}-"))]
    delete_topics(settings, stale)
    backend = make_backend(settings)
    backend.execute(f"DROP DATABASE IF EXISTS {ns.database}")
    backend.close()
    # topic deletion is asynchronous in Kafka: wait until the names are free again
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = set(admin_client(settings).list_topics(timeout=10).topics) & set(stale)
        if not left:
            break
        time.sleep(0.5)
    return len(stale)


def _spawn(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Child:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    handle = log.open("wb")
    # own session: Ctrl-C in the terminal reaches only the demo, which stops children in order
    proc = subprocess.Popen(
        [sys.executable, "-m", "cxstream.cli", *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    handle.close()
    return Child(name, proc, log)


def _stop(child: Child, timeout: float = 30.0) -> int | None:
    if child.process.poll() is None:
        child.process.send_signal(signal.SIGTERM)
        try:
            child.process.wait(timeout)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
    return child.process.returncode


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Observer:
    """Reads produced counts, consumer lag, worker stats and ClickHouse rows."""

    def __init__(self, settings: Settings, groups: dict[str, tuple[str, list[str]]]) -> None:
        """``groups``: label -> (consumer group, topics it consumes), for the lag figures."""
        from confluent_kafka import Consumer
        from confluent_kafka.admin import AdminClient

        from streams.kafka_config import confluent_config
        from streams.topics import platform_topics

        self.settings = settings
        self.groups = groups
        base = confluent_config(settings)
        self.admin = AdminClient(base)
        self.consumer = Consumer({**base, "group.id": "cxstream-demo-observer"})
        self.topics = [spec.name for spec in platform_topics(settings)]
        self.dlq_topic = settings.topic("dlq")
        self._backend: Any = None

    def _high_watermarks(self, topic: str) -> dict[int, int]:
        from confluent_kafka import TopicPartition

        meta = self.consumer.list_topics(topic, timeout=5)
        marks = {}
        for partition in meta.topics[topic].partitions:
            _, high = self.consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=5
            )
            marks[partition] = high
        return marks

    def _lag(
        self, group: str, topics: list[str], marks: dict[str, dict[int, int]]
    ) -> int | None:
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

        wanted = [TopicPartition(t, p) for t in topics if t in marks for p in marks[t]]
        try:
            future = self.admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group, wanted)]
            )[group]
            committed = future.result(timeout=5).topic_partitions
        except Exception:  # a group that has not committed yet has no answer
            return None
        lag = 0
        for tp in committed:
            high = marks[tp.topic][tp.partition]
            lag += high - (tp.offset if tp.offset >= 0 else 0)
        return lag

    def snapshot(self) -> Snapshot:
        import httpx

        snap = Snapshot()
        marks = {}
        for topic in self.topics:
            try:
                marks[topic] = self._high_watermarks(topic)
            except Exception as exc:
                snap.errors.append(f"{topic}: {exc}")
                continue
            total = sum(marks[topic].values())
            if topic == self.dlq_topic:
                snap.dead_letters = total
            elif total:
                snap.produced[topic] = total
        for label, (group, topics) in self.groups.items():
            snap.lag[label] = self._lag(group, topics, marks)
        url = f"http://127.0.0.1:{self.settings.worker.web_port}/v1/stats/channels"
        try:
            snap.worker = httpx.get(url, timeout=2).json()
        except Exception as exc:
            snap.errors.append(f"worker view: {type(exc).__name__}")
        try:
            snap.clickhouse = self._clickhouse_counts()
        except Exception as exc:
            snap.errors.append(f"clickhouse: {exc}")
        return snap

    def _clickhouse_counts(self) -> dict[str, int]:
        from sinks.clickhouse.backend import make_backend
        from sinks.clickhouse.tables import event_tables

        if self._backend is None:
            self._backend = make_backend(self.settings)
        counts = {}
        db = self._backend.database
        for table in event_tables():
            rows = self._backend.query(f"SELECT count() FROM {db}.{table.name} FINAL")
            if rows and rows[0][0]:
                counts[table.event] = int(rows[0][0])
        return counts

    def close(self) -> None:
        self.consumer.close()
        if self._backend is not None:
            self._backend.close()


def _render(snap: Snapshot, children: list[Child], simulator: Child | None, started: float) -> Any:
    from rich.console import Group
    from rich.table import Table

    produced = Table(title="events per topic", expand=False)
    produced.add_column("topic")
    produced.add_column("in Kafka", justify="right")
    produced.add_column("in ClickHouse (FINAL)", justify="right")
    for topic, n in sorted(snap.produced.items()):
        event = topic.split(".", 1)[-1]
        produced.add_row(topic, f"{n:,}", f"{snap.clickhouse.get(event, 0):,}")
    produced.add_row("dead letters", f"{snap.dead_letters:,}", "")

    status = Table(title=f"cxstream demo  ({time.time() - started:,.0f} s)", show_header=False)
    for child in [*children, *([simulator] if simulator else [])]:
        rc = child.process.poll()
        status.add_row(child.name, "running" if rc is None else f"exited {rc}", str(child.log))
    for label, lag in snap.lag.items():
        status.add_row(f"lag of {label}", "-" if lag is None else f"{lag:,}", "")
    if snap.worker:
        channels = ", ".join(f"{c} {n:,}" for c, n in snap.worker.get("channels", {}).items())
        status.add_row("worker channel counts", f"{snap.worker.get('total', 0):,}", channels)
    for error in snap.errors[-3:]:
        status.add_row("[yellow]waiting[/]", error, "")
    return Group(status, produced)


def _status_line(snap: Snapshot, started: float) -> str:
    lag = ", ".join(f"{k} {'-' if v is None else v}" for k, v in snap.lag.items())
    worker = (snap.worker or {}).get("total", "-")
    return (
        f"[{time.time() - started:5.0f} s] in Kafka {sum(snap.produced.values()):,}, "
        f"in ClickHouse {sum(snap.clickhouse.values()):,}, worker counted {worker}, "
        f"dead letters {snap.dead_letters}, lag: {lag}"
    )


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _verdict(snap: Snapshot, settings: Settings, poison: int) -> list[tuple[bool, str]]:
    interaction_topic = settings.topic("channel_interaction")
    produced = snap.produced.get(interaction_topic, 0) - poison
    counted = (snap.worker or {}).get("total", -1)
    checks = [
        (counted == produced, f"worker counted {counted:,} of {produced:,} channel interactions"),
        # the worker and the sink both read the interaction topic: each dead-letters every pill
        (
            snap.dead_letters == 2 * poison,
            f"{snap.dead_letters} dead letters for {poison} poison pills (worker + sink)",
        ),
    ]
    for topic, n in sorted(snap.produced.items()):
        event = topic.split(".", 1)[-1]
        expected = n - (poison if topic == interaction_topic else 0)
        landed = snap.clickhouse.get(event, 0)
        checks.append((landed == expected, f"ClickHouse {event}: {landed:,} of {expected:,}"))
    return checks


def _publish_poison(settings: Settings, count: int) -> None:
    """Bad bytes that must reach the dead-letter topic without stopping anything."""
    from confluent_kafka import Producer

    from streams.kafka_config import confluent_config

    pills = [b"\x07not-avro", b"\x00\x00\x00\xff\xffgarbage", b"\x00\x00"]
    producer = Producer(confluent_config(settings))
    for i in range(count):
        producer.produce(settings.topic("channel_interaction"), pills[i % len(pills)], b"poison")
    producer.flush(10)


@contextlib.contextmanager
def _children(settings: Settings, env: dict[str, str], log_dir: Path) -> Iterator[list[Child]]:
    children = [
        _spawn("worker", ["worker", "--no-ensure-topics"], env, log_dir),
        _spawn("sink", ["sink"], env, log_dir),
    ]
    try:
        yield children
    finally:
        for child in reversed(children):
            _stop(child)


@click.command()
@click.option("--events", type=int, default=100_000, show_default=True, help="Events to publish.")
@click.option("--rate", type=float, default=5_000, show_default=True, help="Events/s (0: max).")
@click.option("--customers", type=int, default=5_000, show_default=True)
@click.option("--seed", type=int, default=None, help="Simulator seed (default: new each run).")
@click.option("--poison", type=int, default=3, show_default=True, help="Poison pills to send.")
@click.option("--keep-running", is_flag=True, help="Keep the platform up until Ctrl-C.")
@click.option("--settle-timeout", type=float, default=120, show_default=True)
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
    namespace: str,
) -> None:
    """Run the platform end to end: stack, worker, sink, simulator, live view, checks."""
    import logging
    import random

    from rich.console import Console
    from rich.live import Live

    from cxstream.stack import manager
    from sinks.clickhouse.backend import make_backend
    from sinks.clickhouse.migrations import migrate
    from streams.topics import ensure_topics, platform_topics

    # one line per HTTP poll of the worker would bury the live view
    logging.getLogger("httpx").setLevel(logging.WARNING)
    console = Console()
    base = load_settings()
    ns = Namespace(namespace, namespace, time.strftime("%Y%m%d%H%M%S"))
    settings = _demo_settings(base, ns)
    env = _child_env(settings, ns)
    seed = random.SystemRandom().randrange(1_000_000) if seed is None else seed
    log_dir = settings.stack.home.parent / "demo" / "logs"

    console.print("[bold]1/5 local stack[/] (Kafka, Redis, ClickHouse)")
    for result in manager.up(settings, on_progress=lambda m: console.print(f"  {m}")):
        console.print(f"  {result.name}: {'started' if result.started else 'already running'}")
    console.print(f"[bold]2/5 topics and migrations[/] (namespace {namespace!r})")
    dropped = _clean_slate(settings, ns)
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
    console.print(f"[bold]3/5 worker and sink[/] (logs in {log_dir})")
    started = time.time()
    every_topic = [spec.name for spec in platform_topics(settings)]
    groups = {
        "worker": (ns.worker_group, [settings.topic("channel_interaction")]),
        "sink": (ns.sink_group, every_topic),
    }
    with _children(settings, env, log_dir) as children:
        observer = Observer(settings, groups)
        simulator: Child | None = None
        try:
            console.print(
                f"[bold]4/5 simulator[/]: {events:,} events at {rate:,.0f}/s, seed {seed}"
            )
            _publish_poison(settings, poison)
            simulator = _spawn(
                "simulator",
                [
                    "simulate",
                    "--events",
                    str(events),
                    "--rate",
                    str(rate),
                    "--customers",
                    str(customers),
                    "--seed",
                    str(seed),
                    "--labels",
                    str(log_dir / "scenario-labels.jsonl"),
                ],
                env,
                log_dir,
            )
            snap = observer.snapshot()
            settled_since: float | None = None
            live_view = console.is_terminal
            last_line = 0.0
            with Live(
                _render(snap, children, simulator, started),
                console=console,
                auto_refresh=live_view,
                transient=not live_view,
            ) as live:
                while True:
                    time.sleep(1.0)
                    snap = observer.snapshot()
                    if live_view:
                        live.update(_render(snap, children, simulator, started))
                    elif time.time() - last_line >= 5:
                        # logs and CI get a plain line instead of a redrawn table
                        console.print(_status_line(snap, started))
                        last_line = time.time()
                    for child in children:
                        if child.process.poll() is not None:
                            raise click.ClickException(
                                f"{child.name} exited ({child.process.returncode}):\n"
                                + _tail(child.log)
                            )
                    if simulator.process.poll() not in (None, 0):
                        raise click.ClickException("simulator failed:\n" + _tail(simulator.log))
                    done = simulator.process.poll() == 0 and all(
                        lag == 0 for lag in snap.lag.values()
                    )
                    if done and all(ok for ok, _ in _verdict(snap, settings, poison)):
                        break
                    if settled_since is None and simulator.process.poll() == 0:
                        settled_since = time.time()
                    if settled_since and time.time() - settled_since > settle_timeout:
                        break  # the checks below say what did not arrive
            console.print(_render(snap, children, simulator, started))
            console.print("[bold]5/5 checks[/] against what was produced")
            checks = _verdict(snap, settings, poison)
            for ok, text in checks:
                console.print(f"  {'[green]ok[/]  ' if ok else '[red]FAIL[/]'} {text}")
            if keep_running:
                console.print("platform running; Ctrl-C to stop")
                while all(c.process.poll() is None for c in children):
                    time.sleep(1)
            if not all(ok for ok, _ in checks):
                raise click.ClickException("results do not match what was produced")
        except KeyboardInterrupt:
            console.print("stopping (Ctrl-C)...")
        finally:
            if simulator is not None:
                _stop(simulator)
            observer.close()
    console.print("stopped worker and sink; the stack keeps running (`cxstream stack down`)")
