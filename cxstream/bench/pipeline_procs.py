"""The processes ``cxstream bench pipeline`` runs and watches, and the run's own namespace.

Every run gets fresh topics (prefix ``<prefix>-bpipe-<run id>``), consumer groups, a ClickHouse
database per sink group, Redis keys under the topic prefix and a directory under /tmp;
:func:`clean_up` removes all of it. Children are ``python -m cxstream.cli ...`` in their own
session (:func:`cxstream.demo.children.spawn`), so Ctrl-C reaches only the bench, which stops
them in its ``finally``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxstream.bench.cleanup import delete_redis_prefix
from cxstream.demo.children import Child, OnCall, spawn, stop, tail
from cxstream.errors import ServiceError
from cxstream.settings import Settings, section_environment


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Run:
    """One bench run's names and directory."""

    run_id: str
    settings: Settings
    home: Path

    @classmethod
    def create(cls, settings: Settings, run_id: str) -> Run:
        home = Path(f"/tmp/bench-pipeline-{run_id}")
        home.mkdir(parents=True, exist_ok=True)
        ch = settings.clickhouse.model_copy(update={"database": f"bench_pipe_{run_id}"})
        if ch.host is None:  # chdb is single-process: the sink and the pollers need a server
            ch = ch.model_copy(update={"host": "127.0.0.1", "port": settings.stack.clickhouse_port})
        scoped = settings.model_copy(
            update={
                "kafka": settings.kafka.model_copy(
                    update={"topic_prefix": f"{settings.kafka.topic_prefix}-bpipe-{run_id}"}
                ),
                "clickhouse": ch,
                "worker": settings.worker.model_copy(update={"data_dir": home / "worker"}),
            }
        )
        return cls(run_id, scoped, home)

    @property
    def prefix(self) -> str:
        return self.settings.kafka.topic_prefix

    def group(self, role: str) -> str:
        """A consumer group (Faust app id) of this run; Faust names its changelogs after it."""
        return f"{self.prefix}-{role}"

    def database(self, label: str) -> str:
        return f"bench_pipe_{self.run_id}_{label}"

    def env(self, **extra: str) -> dict[str, str]:
        """The children's environment: this process's plus the run's namespace."""
        s = self.settings
        env = dict(os.environ)
        env.update(
            {
                "CX_KAFKA__BOOTSTRAP_SERVERS": s.kafka.bootstrap_servers,
                "CX_KAFKA__TOPIC_PREFIX": self.prefix,
                "CX_KAFKA__PARTITIONS": str(s.kafka.partitions),
                "CX_CLICKHOUSE__HOST": str(s.clickhouse.host),
                "CX_CLICKHOUSE__PORT": str(s.clickhouse.port),
                "CX_WORKER__DATA_DIR": str(s.worker.data_dir),
                "CX_WORKER__STORE": s.worker.store,
                "CX_LOG_LEVEL": "WARNING",
                **section_environment(s, "redis"),
            }
        )
        env.update(extra)
        return env


@dataclass
class Worker:
    """A ``cxstream worker`` child and its web port."""

    child: Child
    port: int

    def stats(self) -> dict[str, Any] | None:
        try:
            url = f"http://127.0.0.1:{self.port}/v1/stats"
            with urllib.request.urlopen(url, timeout=5) as response:
                data: dict[str, Any] = json.load(response)
                return data
        except (OSError, ValueError):
            return None

    @property
    def pid(self) -> int:
        return self.child.process.pid


@dataclass
class Children:
    """Every child this run started, stopped in reverse order by :meth:`stop_all`."""

    run: Run
    started: list[Child] = field(default_factory=list)

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        child = spawn(name, args, env, self.run.home / "logs")
        self.started.append(child)
        return child

    def worker(self, name: str, group: str, processors: list[str] | None = None) -> Worker:
        port = free_port()
        args = ["worker", "--no-ensure-topics", "--app-id", group, "--web-port", str(port)]
        for processor in processors or []:
            args += ["-p", processor]
        return Worker(self.spawn(name, args, self.run.env()), port)

    def sink(self, name: str, group: str, database: str) -> Child:
        env = self.run.env(CX_CLICKHOUSE__DATABASE=database, CX_CLICKHOUSE__SINK_GROUP_ID=group)
        return self.spawn(name, ["sink"], env)

    def receiver(self, oncall: OnCall) -> Child:
        """The stamping on-call receiver (:mod:`cxstream.bench.pipeline_receiver`)."""
        log_dir = self.run.home / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log = log_dir / "receiver.log"
        with log.open("wb") as handle:
            process = subprocess.Popen(
                [sys.executable, "-m", "cxstream.bench.pipeline_receiver", "--port",
                 str(oncall.port), "--secret", oncall.secret, "--jsonl", str(oncall.received)],
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=self.run.env(),
                start_new_session=True,
            )  # fmt: skip
        child = Child("receiver", process, log)
        self.started.append(child)
        return child

    def check(self) -> None:
        """Raise if a child that should be running has exited."""
        for child in self.started:
            if not child.running:
                raise ServiceError(
                    f"bench pipeline: {child.name} exited with {child.process.returncode}:\n"
                    + tail(child.log)
                )

    def stop(self, child: Child) -> None:
        stop(child)
        with contextlib.suppress(ValueError):
            self.started.remove(child)

    def stop_all(self) -> None:
        while self.started:
            stop(self.started.pop())


def wait_stats(worker: Worker, children: Children, timeout: float = 120) -> dict[str, Any]:
    """The worker's ``/v1/stats`` once its web view answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children.check()
        stats = worker.stats()
        if stats is not None:
            return stats
        time.sleep(0.2)
    raise ServiceError(f"bench pipeline: {worker.child.name} web view not up in {timeout:.0f} s")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ServiceError(f"bench pipeline: no VmRSS in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class GroupLag:
    """Committed lag of consumer groups on a set of topics (Kafka admin API)."""

    def __init__(self, settings: Settings, topics: list[str]) -> None:
        from confluent_kafka import Consumer
        from confluent_kafka.admin import AdminClient

        from streams.kafka_config import confluent_config

        base = confluent_config(settings)
        self.admin = AdminClient(base)
        self.consumer = Consumer({**base, "group.id": f"{settings.kafka.topic_prefix}-watch"})
        self.topics = topics
        self.marks = self.high_watermarks()

    def high_watermarks(self) -> dict[tuple[str, int], int]:
        from confluent_kafka import TopicPartition

        marks: dict[tuple[str, int], int] = {}
        for topic in self.topics:
            meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
            for partition in meta.partitions:
                _, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10
                )
                marks[(topic, partition)] = high
        return marks

    def refresh(self) -> int:
        """Re-read the end offsets (after producing more); returns the messages in total."""
        self.marks = self.high_watermarks()
        return sum(self.marks.values())

    def lag(self, group: str) -> int | None:
        """Messages not committed by ``group`` yet; ``None`` until it committed something."""
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

        wanted = [TopicPartition(t, p) for (t, p), high in self.marks.items() if high > 0]
        try:
            future = self.admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group, wanted)]
            )[group]
            committed = future.result(timeout=10).topic_partitions
        except Exception:  # a group without commits has no answer yet
            return None
        if all(tp.offset < 0 for tp in committed):
            return None
        return sum(self.marks[(tp.topic, tp.partition)] - max(tp.offset, 0) for tp in committed)

    def behind(self, group: str) -> list[str]:
        """``topic[partition]: committed/end`` of every partition ``group`` has not finished."""
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

        wanted = [TopicPartition(t, p) for (t, p), high in self.marks.items() if high > 0]
        future = self.admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, wanted)]
        )[group]
        out = []
        for tp in future.result(timeout=10).topic_partitions:
            done, end = max(tp.offset, 0), self.marks[(tp.topic, tp.partition)]
            if end > done:
                out.append(f"{tp.topic}[{tp.partition}]: {done}/{end}")
        return out

    def produced(self, prefix: str) -> dict[str, int]:
        """Messages in every other topic named ``prefix...`` (outputs, changelogs, internal)."""
        from confluent_kafka import TopicPartition

        topics = self.consumer.list_topics(timeout=10).topics
        out: dict[str, int] = {}
        for topic, meta in topics.items():
            if not topic.startswith(prefix) or topic in self.topics:
                continue
            total = 0
            for partition in meta.partitions:
                low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10
                )
                total += high - low
            out[topic[len(prefix) :].lstrip(".-")] = total
        return out

    def close(self) -> None:
        self.consumer.close()


def _delete_groups(run: Run) -> None:
    """Every consumer group of the run (all are named after its topic prefix)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from streams.kafka_config import confluent_config

    admin = AdminClient(confluent_config(run.settings))
    listed = admin.list_consumer_groups(request_timeout=10).result()
    groups = [g.group_id for g in listed.valid if g.group_id.startswith(run.prefix)]
    if groups:
        for future in admin.delete_consumer_groups(groups, request_timeout=30).values():
            with contextlib.suppress(KafkaException):  # gone already, or still leaving
                future.result()


def clean_up(run: Run, databases: list[str]) -> list[str]:
    """Drop the run's topics (changelogs included), databases, Redis keys and directory.

    Returns what could not be removed (the bench reports it instead of failing at the end).
    """
    problems: list[str] = []
    try:
        from streams.topics import admin_client, delete_topics

        existing = admin_client(run.settings).list_topics(timeout=10).topics
        delete_topics(run.settings, [t for t in existing if t.startswith(run.prefix)])
    except Exception as exc:
        problems.append(f"topics: {exc}")
    try:
        _delete_groups(run)
    except Exception as exc:
        problems.append(f"consumer groups: {exc}")
    try:
        from sinks.clickhouse.backend import ServerBackend

        backend = ServerBackend(run.settings)
        try:
            for database in databases:
                backend.execute(f"DROP DATABASE IF EXISTS {database}")
        finally:
            backend.close()
    except Exception as exc:
        problems.append(f"clickhouse: {exc}")
    try:
        delete_redis_prefix(run.settings, run.prefix)
    except Exception as exc:
        problems.append(f"redis: {exc}")
    # the Faust data; the children's logs stay for a look after a failed run
    shutil.rmtree(run.home / "worker", ignore_errors=True)
    (run.home / "delivery.sqlite").unlink(missing_ok=True)
    return problems
