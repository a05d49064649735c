"""pid files, stale pids, detached start and stop (with throwaway sleeper processes only)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from cxstream.stack import process

_SLEEPER = "import sys, time; time.sleep(60)"
_STUBBORN = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


def _unused_pid() -> int:
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # no process can have it


def _marker_matcher(marker: str) -> process.Matcher:
    def matches(argv: Sequence[str]) -> bool:
        return marker in argv

    return matches


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """A detached process whose argv carries a unique marker, as a service's carries its config."""
    marker = f"marker-{uuid.uuid4()}"
    pid = process.spawn(
        [sys.executable, "-c", _SLEEPER, marker], log_file=tmp_path / "out.log", cwd=tmp_path
    )
    # on a loaded machine /proc may show the argv a moment after spawn returned (seen in CI)
    deadline = time.monotonic() + 10
    while marker not in (process.cmdline(pid) or []) and time.monotonic() < deadline:
        time.sleep(0.01)
    yield pid, marker
    process.terminate(pid, timeout=1.0, sig=signal.SIGKILL)


def test_read_pid_missing_or_garbage(tmp_path: Path) -> None:
    assert process.read_pid(tmp_path / "none.pid") is None
    (tmp_path / "bad.pid").write_text("not a pid\n")
    assert process.read_pid(tmp_path / "bad.pid") is None
    process.write_pid(tmp_path / "ok.pid", 1234)
    assert process.read_pid(tmp_path / "ok.pid") == 1234


def test_stale_pid_of_vanished_process_is_removed(tmp_path: Path) -> None:
    pid_file = tmp_path / "svc.pid"
    process.write_pid(pid_file, _unused_pid())
    assert process.find_pid(pid_file, _marker_matcher(f"marker-{uuid.uuid4()}")) is None
    assert not pid_file.exists()


def test_reused_pid_is_not_taken_for_the_service(tmp_path: Path, sleeper: tuple[int, str]) -> None:
    other_pid, _ = sleeper  # alive, but not "our" service: its argv lacks our marker
    pid_file = tmp_path / "svc.pid"
    process.write_pid(pid_file, other_pid)
    assert process.find_pid(pid_file, _marker_matcher(f"marker-{uuid.uuid4()}")) is None
    assert not pid_file.exists()
    assert process.is_alive(other_pid)  # and it was left alone


def test_running_service_without_pid_file_is_found(
    tmp_path: Path, sleeper: tuple[int, str]
) -> None:
    pid, marker = sleeper
    pid_file = tmp_path / "svc.pid"
    assert process.find_pid(pid_file, _marker_matcher(marker)) == pid
    assert process.read_pid(pid_file) == pid  # repaired


def test_spawned_process_has_its_own_session(sleeper: tuple[int, str]) -> None:
    pid, _ = sleeper
    assert os.getsid(pid) == pid
    assert os.getsid(pid) != os.getsid(0)


def test_terminate_graceful(sleeper: tuple[int, str]) -> None:
    pid, _ = sleeper
    assert process.terminate(pid, timeout=5.0) is False
    assert not process.is_alive(pid)


def test_terminate_falls_back_to_sigkill(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    pid = process.spawn([sys.executable, "-c", _STUBBORN], log_file=log, cwd=tmp_path)
    deadline = time.monotonic() + 10
    while "ready" not in process.tail(log) and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    assert process.terminate(pid, timeout=0.5) is True
    assert not process.is_alive(pid)
    assert time.monotonic() - started < 5


def test_terminate_of_a_stopped_process(sleeper: tuple[int, str]) -> None:
    pid, _ = sleeper
    os.kill(pid, signal.SIGSTOP)  # as a fault test may leave it
    assert process.terminate(pid, timeout=5.0) is False
    assert not process.is_alive(pid)


def test_zombie_child_counts_as_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while process.is_alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not process.is_alive(child.pid)
    assert process.cmdline(child.pid) is None
    assert child.wait(timeout=5) == 0  # is_alive did not steal the exit status from its owner


def test_scanning_does_not_reap_other_code_s_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "raise SystemExit(7)"])
    deadline = time.monotonic() + 10
    while process.is_alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.scan_processes(_marker_matcher(f"marker-{uuid.uuid4()}")) is None
    assert child.wait(timeout=5) == 7


def test_port_in_use() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert process.port_in_use(port)
    assert not process.port_in_use(port)


def test_tail(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    assert process.tail(log) == ""
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert process.tail(log, 2) == "line 98\nline 99"
