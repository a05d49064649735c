"""Start, stop and inspect the native stack (Kafka, Redis, ClickHouse) as a whole or per service.

Every function takes the settings explicitly (``None``: :func:`cxstream.settings.load_settings`),
so tests can point a stack at a temporary home and free ports. ``up`` and ``down`` are idempotent
and hold a lock file under the stack home so that concurrent callers do not race.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from cxstream.errors import ConfigurationError, ServiceError
from cxstream.settings import Settings, load_settings
from cxstream.stack import process
from cxstream.stack.clickhouse import ClickHouseService
from cxstream.stack.kafka import KafkaService
from cxstream.stack.redis import RedisService
from cxstream.stack.service import Service

SERVICE_CLASSES: dict[str, type[Service]] = {
    "kafka": KafkaService,
    "redis": RedisService,
    "clickhouse": ClickHouseService,
}
SERVICE_NAMES: tuple[str, ...] = tuple(SERVICE_CLASSES)

_POLL_SECONDS = 0.1
_PROBE_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    port: int
    healthy: bool
    log_file: Path
    note: str = ""


@dataclass(frozen=True)
class StartResult:
    name: str
    pid: int
    port: int
    #: False when the service was already running (``up`` was a no-op for it)
    started: bool
    #: from process start (or from the check, if already running) to the first healthy probe
    seconds: float
    #: time spent before the start: writing configs, formatting storage, fetching jars
    prepare_seconds: float = 0.0


@dataclass(frozen=True)
class StopResult:
    name: str
    pid: int | None
    #: False when it was not running (``down`` was a no-op for it)
    stopped: bool
    #: True when SIGTERM was not enough and SIGKILL was sent
    killed: bool = False


@dataclass(frozen=True)
class _Launch:
    svc: Service
    pid: int
    since: float
    started: bool
    prepare_seconds: float


def select(only: Iterable[str] | None = None) -> list[str]:
    """Service names in start order; ``only`` restricts them (unknown names are an error)."""
    known = list(SERVICE_CLASSES)
    if only is None:
        return known
    wanted = {name.strip().lower() for name in only if name.strip()}
    unknown = sorted(wanted - set(known))
    if unknown:
        raise ConfigurationError(
            f"unknown service(s) {', '.join(unknown)}; choose from {', '.join(known)}"
        )
    return [name for name in known if name in wanted]


def make_service(name: str, settings: Settings | None = None) -> Service:
    (name,) = select([name])
    return SERVICE_CLASSES[name](settings or load_settings())


def _services(settings: Settings | None, only: Iterable[str] | None) -> list[Service]:
    resolved = settings or load_settings()
    return [SERVICE_CLASSES[name](resolved) for name in select(only)]


def _lock_file(settings: Settings | None) -> Path:
    return (settings or load_settings()).stack.home / "run" / "stack.lock"


def status(
    settings: Settings | None = None, only: Iterable[str] | None = None
) -> list[ServiceStatus]:
    """One row per service; only a process recognised as this stack's own is probed."""
    rows = []
    for svc in _services(settings, only):
        pid = process.find_pid(svc.pid_file, svc.matches)
        healthy = pid is not None and svc.healthy(_PROBE_TIMEOUT_SECONDS * 2)
        note = ""
        if pid is None and any(process.port_in_use(port) for port in svc.ports):
            note = "port busy: another program (not this stack) listens"
        elif pid is not None and not healthy:
            note = "running but not answering"
        rows.append(ServiceStatus(svc.name, pid, svc.port, healthy, svc.log_file, note))
    return rows


def fetch(settings: Settings | None = None) -> bool:
    """Fetch the Kafka jars if needed; True if they were downloaded now."""
    kafka = KafkaService(settings or load_settings())
    with process.file_lock(_lock_file(settings)):
        return kafka.fetch()


def up(
    settings: Settings | None = None,
    only: Iterable[str] | None = None,
    *,
    on_progress: Callable[[str], None] | None = None,
) -> list[StartResult]:
    """Start what is not running, then wait until every selected service answers.

    If one fails, the services this call started are stopped again, so a failed ``up`` leaves
    things as they were (logs stay for the post-mortem).
    """
    resolved = settings or load_settings()
    say = on_progress or (lambda _message: None)
    with process.file_lock(_lock_file(resolved)):
        launched: list[_Launch] = []
        try:
            for svc in _services(resolved, only):
                launched.append(_launch(svc, say))
            return _wait_healthy(launched, resolved.stack.start_timeout_seconds, say)
        except BaseException:
            for item in launched:
                if item.started:
                    process.terminate(item.pid, timeout=resolved.stack.stop_timeout_seconds)
                    process.remove_pid(item.svc.pid_file)
            raise


def _launch(svc: Service, say: Callable[[str], None]) -> _Launch:
    pid = process.find_pid(svc.pid_file, svc.matches)
    if pid is not None:
        return _Launch(svc, pid, time.monotonic(), started=False, prepare_seconds=0.0)
    busy = [port for port in svc.ports if process.port_in_use(port)]
    if busy:
        raise ServiceError(
            f"cannot start {svc.name}: port(s) {', '.join(map(str, busy))} already in use by "
            f"another program; stop it or choose other ports (CX_STACK__* settings)"
        )
    if isinstance(svc, KafkaService) and not svc.libs_present():
        say(f"fetching Kafka {svc.stack.kafka_version} jars with Maven (first time only)...")
    prepare_started = time.monotonic()
    svc.prepare()
    prepare_seconds = time.monotonic() - prepare_started
    pid = process.spawn(svc.argv(), log_file=svc.console_file, cwd=svc.dir, env=svc.env())
    process.write_pid(svc.pid_file, pid)
    return _Launch(svc, pid, time.monotonic(), started=True, prepare_seconds=prepare_seconds)


def _wait_healthy(
    launched: list[_Launch], timeout: float, say: Callable[[str], None]
) -> list[StartResult]:
    """Wait for all services at once (one thread each), so each measured time is its own."""
    if not launched:
        return []
    deadline = time.monotonic() + timeout
    abort = threading.Event()
    with ThreadPoolExecutor(len(launched), thread_name_prefix="stack-wait") as pool:
        futures = [pool.submit(_wait_one, item, deadline, abort, say) for item in launched]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()  # re-raise the first failure here
        finally:
            abort.set()  # the others stop waiting when one has failed
        return [future.result() for future in futures]


def _wait_one(
    item: _Launch, deadline: float, abort: threading.Event, say: Callable[[str], None]
) -> StartResult:
    svc = item.svc
    while not abort.is_set():
        if svc.healthy(_PROBE_TIMEOUT_SECONDS):
            result = StartResult(
                name=svc.name,
                pid=item.pid,
                port=svc.port,
                started=item.started,
                seconds=time.monotonic() - item.since,
                prepare_seconds=item.prepare_seconds,
            )
            say(_describe(result))
            return result
        if not process.is_alive(item.pid):
            process.remove_pid(svc.pid_file)
            raise ServiceError(f"{svc.name} exited during start-up.\n{_post_mortem(svc)}")
        if time.monotonic() > deadline:
            raise ServiceError(
                f"{svc.name} not healthy after {deadline - item.since:.0f} s.\n{_post_mortem(svc)}"
            )
        abort.wait(_POLL_SECONDS)
    raise ServiceError(f"{svc.name}: waiting abandoned because another service failed")


def _describe(result: StartResult) -> str:
    if not result.started:
        return f"{result.name}: already running (pid {result.pid}, port {result.port}), healthy"
    return (
        f"{result.name}: started (pid {result.pid}, port {result.port}), healthy after "
        f"{result.seconds:.1f} s"
    )


def _post_mortem(svc: Service) -> str:
    parts = []
    for path in (svc.console_file, svc.log_file):
        text = process.tail(path, 15)
        if text:
            parts.append(f"--- last lines of {path} ---\n{text}")
    return "\n".join(parts) or f"(no output in {svc.console_file} or {svc.log_file})"


def down(settings: Settings | None = None, only: Iterable[str] | None = None) -> list[StopResult]:
    """Stop the selected services (reverse start order); stopped ones are skipped."""
    resolved = settings or load_settings()
    with process.file_lock(_lock_file(resolved)):
        services = list(reversed(_services(resolved, only)))
        results = [_stop(svc, resolved.stack.stop_timeout_seconds) for svc in services]
    return list(reversed(results))


def _stop(svc: Service, timeout: float) -> StopResult:
    pid = process.find_pid(svc.pid_file, svc.matches)
    if pid is None:
        return StopResult(svc.name, None, stopped=False)
    killed = process.terminate(pid, timeout=timeout)
    process.remove_pid(svc.pid_file)
    return StopResult(svc.name, pid, stopped=True, killed=killed)


def start_service(name: str, settings: Settings | None = None) -> StartResult:
    """Start one service (no-op if it runs) and wait until it is healthy."""
    return up(settings, [name])[0]


def stop_service(name: str, settings: Settings | None = None) -> StopResult:
    """Stop one service gracefully (SIGTERM, then SIGKILL after the stop timeout)."""
    return down(settings, [name])[0]


def kill_service(
    name: str, sig: int = signal.SIGKILL, settings: Settings | None = None
) -> int | None:
    """Send ``sig`` to a running service without waiting (fault tests: SIGKILL, SIGSTOP, ...).

    Returns the pid signalled, or ``None`` if the service was not running. The pid file is left
    alone: after SIGKILL it is stale, which the next ``up``/``status`` detects and removes.
    """
    svc = make_service(name, settings)
    pid = process.find_pid(svc.pid_file, svc.matches)
    if pid is None or not process.send_signal(pid, sig):
        return None
    return pid
