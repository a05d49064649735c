"""up/down/status logic of the stack, driven with a tiny fake TCP service (no real services)."""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from cxstream.errors import ConfigurationError, ServiceError
from cxstream.settings import Settings, StackSettings
from cxstream.stack import manager, process
from cxstream.stack.service import Service
from tests.support.services import free_port

# Listens on argv[2] after an optional delay and says "ok" to each client; argv[1] is its
# "config file", the marker the stack uses to recognise its own process.
_SERVER = """
import socket, sys, time
time.sleep(float(sys.argv[3]))
if sys.argv[4] == "crash":
    print("fake: cannot start", flush=True)
    sys.exit(3)
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[2]))); srv.listen()
while True:
    conn, _ = srv.accept(); conn.sendall(b"ok"); conn.close()
"""




class FakeService(Service):
    name = "fake"
    delay = 0.0
    mode = "serve"

    @property
    def port(self) -> int:
        return self.stack.redis_port  # any StackSettings port will do

    @property
    def config_file(self) -> Path:
        return self.dir / "fake.conf"

    def prepare(self) -> None:
        super().prepare()
        self.config_file.write_text("fake\n")

    def argv(self) -> list[str]:
        args = [str(self.config_file), str(self.port), str(self.delay), self.mode]
        return [sys.executable, "-c", _SERVER, *args]

    def matches(self, argv: Sequence[str]) -> bool:
        return str(self.config_file) in argv

    def probe(self, timeout: float) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as conn:
            if conn.recv(2) != b"ok":
                raise ServiceError("fake said something else")


class CrashingService(FakeService):
    name = "crashing"
    mode = "crash"

    @property
    def port(self) -> int:
        return self.stack.kafka_port


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    stack = StackSettings(
        home=tmp_path / "stack",
        redis_port=free_port(),
        kafka_port=free_port(),
        start_timeout_seconds=20,
        stop_timeout_seconds=5,
    )
    return Settings(stack=stack)


@pytest.fixture
def fake_only(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[None]:
    monkeypatch.setattr(manager, "SERVICE_CLASSES", {"fake": FakeService})
    yield
    manager.down(settings)  # never leave a fake behind, whatever the test did


def test_select_orders_and_validates() -> None:
    assert manager.select(None) == ["kafka", "redis", "clickhouse"]
    assert manager.select(["clickhouse", " Kafka "]) == ["kafka", "clickhouse"]
    with pytest.raises(ConfigurationError, match="zookeeper"):
        manager.select(["kafka", "zookeeper"])


@pytest.mark.usefixtures("fake_only")
def test_up_is_idempotent_and_down_stops(settings: Settings) -> None:
    (first,) = manager.up(settings)
    assert first.started
    assert process.read_pid(FakeService(settings).pid_file) == first.pid
    (again,) = manager.up(settings)
    assert not again.started
    assert again.pid == first.pid
    (row,) = manager.status(settings)
    assert row.healthy
    assert row.pid == first.pid
    (stopped,) = manager.down(settings)
    assert stopped.stopped
    assert not process.is_alive(first.pid)
    assert not FakeService(settings).pid_file.exists()
    (noop,) = manager.down(settings)
    assert not noop.stopped


@pytest.mark.usefixtures("fake_only")
def test_cold_start_is_measured(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FakeService, "delay", 0.5)
    (result,) = manager.up(settings)
    assert 0.5 <= result.seconds < 10


@pytest.mark.usefixtures("fake_only")
def test_status_removes_stale_pid_file(settings: Settings) -> None:
    svc = FakeService(settings)
    process.write_pid(svc.pid_file, int(Path("/proc/sys/kernel/pid_max").read_text()) + 1)
    (row,) = manager.status(settings)
    assert row.pid is None
    assert not row.healthy
    assert not svc.pid_file.exists()


@pytest.mark.usefixtures("fake_only")
def test_up_refuses_a_port_taken_by_another_program(settings: Settings) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", settings.stack.redis_port))
        other.listen()
        (row,) = manager.status(settings)
        assert "another program" in row.note
        with pytest.raises(ServiceError, match="already in use"):
            manager.up(settings)


def test_failed_start_reports_log_and_stops_what_it_started(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        manager, "SERVICE_CLASSES", {"fake": FakeService, "crashing": CrashingService}
    )
    monkeypatch.setattr(FakeService, "delay", 0.3)  # still starting when the other one dies
    try:
        with pytest.raises(ServiceError, match="crashing exited") as excinfo:
            manager.up(settings)
        assert "fake: cannot start" in str(excinfo.value)
        assert all(row.pid is None for row in manager.status(settings))
    finally:
        manager.down(settings)


@pytest.mark.usefixtures("fake_only")
def test_kill_service_and_restart(settings: Settings) -> None:
    (first,) = manager.up(settings)
    assert manager.kill_service("fake", signal.SIGKILL, settings) == first.pid
    assert process.wait_dead(first.pid, 5)
    (row,) = manager.status(settings)
    assert row.pid is None
    second = manager.start_service("fake", settings)
    assert second.started
    assert second.pid != first.pid
    assert manager.stop_service("fake", settings).stopped
    assert manager.kill_service("fake", signal.SIGKILL, settings) is None
