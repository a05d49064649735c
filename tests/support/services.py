"""The one place where tests get real services (Kafka, Redis, ClickHouse) from the native stack.

:func:`ensure_stack` reuses services that already answer (a developer's ``cxstream stack up``,
or the one ``.ci/run`` started) and starts only the missing ones; :func:`release_stack` stops
only what :func:`ensure_stack` started. Set ``CX_TEST_KEEP_STACK=1`` to leave them running after
the session (faster re-runs). The stack uses the normal settings (``CX_STACK__*``), so tests and
a developer's stack share one set of services.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from cxstream.settings import Settings, load_settings
from cxstream.stack import manager
from cxstream.stack.manager import StartResult, StopResult

LOCALHOST = "127.0.0.1"
KEEP_ENV = "CX_TEST_KEEP_STACK"


def settings_for_stack(base: Settings) -> Settings:
    """``base`` with the Kafka, Redis and ClickHouse client settings pointed at the stack."""
    stack = base.stack
    return base.model_copy(
        update={
            "kafka": base.kafka.model_copy(
                update={"bootstrap_servers": f"{LOCALHOST}:{stack.kafka_port}"}
            ),
            "redis": base.redis.model_copy(
                update={"url": f"redis://{LOCALHOST}:{stack.redis_port}/0"}
            ),
            "clickhouse": base.clickhouse.model_copy(
                update={"host": LOCALHOST, "port": stack.clickhouse_port}
            ),
        }
    )


@dataclass(frozen=True)
class LocalStack:
    """Addresses of the running stack, plus per-service controls for fault tests."""

    #: the session's settings with every client section pointed at the stack
    settings: Settings
    #: services this session started (and so will stop at its end)
    started: tuple[str, ...] = field(default=())

    @property
    def kafka_bootstrap(self) -> str:
        return self.settings.kafka.bootstrap_servers

    @property
    def redis_url(self) -> str:
        return self.settings.redis.url

    @property
    def clickhouse_host(self) -> str:
        return self.settings.clickhouse.host or LOCALHOST

    @property
    def clickhouse_port(self) -> int:
        return self.settings.clickhouse.port

    def stop(self, name: str) -> StopResult:
        return manager.stop_service(name, self.settings)

    def start(self, name: str) -> StartResult:
        return manager.start_service(name, self.settings)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int | None:
        return manager.kill_service(name, sig, self.settings)


def ensure_stack(settings: Settings | None = None, only: Iterable[str] | None = None) -> LocalStack:
    """Make the selected services healthy, starting only those that are not."""
    base = settings or load_settings()
    unhealthy = [row.name for row in manager.status(base, only) if not row.healthy]
    started: tuple[str, ...] = ()
    if unhealthy:
        results = manager.up(base, unhealthy)
        started = tuple(result.name for result in results if result.started)
    return LocalStack(settings_for_stack(base), started)


def release_stack(stack: LocalStack) -> None:
    """Stop what :func:`ensure_stack` started (nothing if ``CX_TEST_KEEP_STACK`` is set)."""
    if stack.started and not os.environ.get(KEEP_ENV):
        manager.down(stack.settings, stack.started)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now (for servers tests start)."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])
