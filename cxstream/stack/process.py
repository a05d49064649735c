"""Process helpers of the native stack: pid files, liveness, detached start, stop, log tails.

A pid file alone cannot be trusted: the process may be gone, or the kernel may have given its pid
to another program. So every check goes through :func:`find_pid`, which only accepts a pid whose
``/proc/<pid>/cmdline`` satisfies the service's own matcher (its config path is in the command
line), and falls back to scanning ``/proc`` so that a process whose pid file was deleted is still
found (and not started a second time).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from cxstream.errors import ServiceError

Matcher = Callable[[Sequence[str]], bool]

# Services started by this process (tests) are its children. Holding their Popen objects for the
# life of the process lets is_alive() reap them and keeps subprocess from warning that a freed
# Popen's child "is still running" (it is meant to be).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def read_pid(path: Path) -> int | None:
    """The pid in ``path``, or ``None`` if the file is missing or does not hold a number."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def write_pid(path: Path, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)  # atomic, so a reader never sees a half-written pid


def remove_pid(path: Path) -> None:
    path.unlink(missing_ok=True)


def cmdline(pid: int) -> list[str] | None:
    """The argv of a live process, ``None`` if there is none (or it is a zombie)."""
    if not is_alive(pid):
        return None
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie counts as dead (services we spawned are also reaped)."""
    if pid <= 0:
        return False
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    # Never waitpid() other pids: that would steal the exit status of some other code's child.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # Field 3, after the parenthesised command name (which may itself contain spaces or ")").
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def find_pid(pid_file: Path, matches: Matcher) -> int | None:
    """Pid of the running service process, repairing or removing its pid file as needed."""
    pid = read_pid(pid_file)
    if pid is not None:
        argv = cmdline(pid)
        if argv is not None and matches(argv):
            return pid
        remove_pid(pid_file)  # stale: process gone, or pid reused by another program
    found = scan_processes(matches)
    if found is not None:
        write_pid(pid_file, found)
    return found


def scan_processes(matches: Matcher) -> int | None:
    """The lowest pid in ``/proc`` whose command line ``matches`` (ignores this process)."""
    own = os.getpid()
    candidates = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        argv = cmdline(int(entry.name))
        if argv and matches(argv):
            candidates.append(int(entry.name))
    return min(candidates) if candidates else None


def spawn(
    argv: Sequence[str], *, log_file: Path, cwd: Path, env: dict[str, str] | None = None
) -> int:
    """Start ``argv`` detached: own session, no stdin, stdout and stderr appended to ``log_file``.

    Its own session means Ctrl-C in the terminal that ran ``cxstream stack up`` (or the end of a
    pytest run) does not reach the service.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise ServiceError(f"cannot start {argv[0]}: {exc}") from exc
    _CHILDREN[proc.pid] = proc
    return proc.pid


def terminate(pid: int, *, timeout: float, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig``, wait up to ``timeout`` s, then SIGKILL; True if SIGKILL was needed."""
    if not send_signal(pid, sig):
        return False
    send_signal(pid, signal.SIGCONT)  # a process frozen by SIGSTOP (fault tests) must see it
    if wait_dead(pid, timeout):
        return False
    send_signal(pid, signal.SIGKILL)
    if not wait_dead(pid, 10.0):
        raise ServiceError(f"process {pid} survived SIGKILL")
    return True


def send_signal(pid: int, sig: int) -> bool:
    """Signal ``pid``; False if it no longer exists."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something already listens on ``host:port`` (a bind attempt, not a connect)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: sockets left in TIME_WAIT by a service we just stopped do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a text file ('' if it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock on ``path`` so two ``stack up``/``down`` runs do not race each other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
