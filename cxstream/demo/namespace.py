"""Where one demo run lives: its topics, consumer groups, ClickHouse database and ports."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from cxstream.settings import Settings


@dataclass(frozen=True)
class Namespace:
    """One demo run's own topics, consumer groups and ClickHouse database.

    Every run starts from a clean slate (the previous run's topics and database are dropped), so
    the final checks compare exact sets with what this run produced.
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

    @property
    def notifier_group(self) -> str:
        return f"{self.topic_prefix}-notifier-{self.run_id}"


def demo_settings(settings: Settings, ns: Namespace, log_dir: Path) -> Settings:
    """The settings the children get, as this process sees them.

    Without a configured ClickHouse server the demo uses the stack's server: embedded chdb can be
    opened by one process only, and the sink and this view both need it. Redis and Kafka are the
    stack's unless configured.
    """
    clickhouse = settings.clickhouse.model_copy(
        update={"database": ns.database, "sink_group_id": ns.sink_group}
    )
    if clickhouse.host is None:
        clickhouse = clickhouse.model_copy(
            update={"host": "127.0.0.1", "port": settings.stack.clickhouse_port}
        )
    notify = settings.notify.model_copy(
        update={
            "group_id": ns.notifier_group,
            "delivery_log_path": log_dir / f"delivery-{ns.run_id}.sqlite",
        }
    )
    return settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"topic_prefix": ns.topic_prefix}),
            "worker": settings.worker.model_copy(update={"app_id": ns.worker_group}),
            "clickhouse": clickhouse,
            "notify": notify,
        }
    )


def child_env(settings: Settings, ns: Namespace) -> dict[str, str]:
    """Children read the same settings; the demo points them at the stack and its namespace."""
    env = dict(os.environ)
    env.update(
        {
            "CX_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "CX_KAFKA__TOPIC_PREFIX": ns.topic_prefix,
            "CX_REDIS__URL": settings.redis.url,
            "CX_WORKER__APP_ID": ns.worker_group,
            "CX_WORKER__WEB_PORT": str(settings.worker.web_port),
            "CX_CLICKHOUSE__DATABASE": ns.database,
            "CX_CLICKHOUSE__SINK_GROUP_ID": ns.sink_group,
            "CX_NOTIFY__GROUP_ID": ns.notifier_group,
            "CX_NOTIFY__DELIVERY_LOG_PATH": str(settings.notify.delivery_log_path),
        }
    )
    if settings.clickhouse.host is not None:
        env["CX_CLICKHOUSE__HOST"] = settings.clickhouse.host
        env["CX_CLICKHOUSE__PORT"] = str(settings.clickhouse.port)
    return env


def clean_slate(settings: Settings, ns: Namespace) -> int:
    """Drop the previous demo runs' topics (incl. Faust changelogs), database and Redis keys."""
    from cxstream.redis_connection import sync_redis
    from sinks.clickhouse.backend import make_backend
    from streams.topics import admin_client, delete_topics

    existing = admin_client(settings).list_topics(timeout=10).topics
    stale = [t for t in existing if t.startswith((f"{ns.topic_prefix}.", f"{ns.topic_prefix}-"))]
    delete_topics(settings, stale)
    backend = make_backend(settings)
    backend.execute(f"DROP DATABASE IF EXISTS {ns.database}")
    backend.close()
    client = sync_redis(settings)
    try:
        keys = list(client.scan_iter(match=f"{ns.topic_prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()
    # topic deletion is asynchronous in Kafka: wait until the names are free again
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = set(admin_client(settings).list_topics(timeout=10).topics) & set(stale)
        if not left:
            break
        time.sleep(0.5)
    return len(stale)
