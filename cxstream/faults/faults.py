"""Fault injectors, and what surviving each one proves.

Faults run in two lanes at once while the simulator publishes: the *process* lane (worker
kills, a worker added and removed) and the *service* lane (Kafka, ClickHouse, Redis outages);
each lane runs its faults one after another, so at most one process fault and one service
outage overlap. Every action is logged with its time (:class:`Injection`).

- :class:`WorkerKills` — SIGKILL a worker at random moments, restart it each time (the last
  kill inside the Redis outage, so a worker dies with effects it could not write and restarts
  without Redis). Proves that a crash between a table/changelog write, an output send and the
  source-offset commit is replayed without effect: channel counts, profiles, SLA clocks, KPI
  partials, security state and recommender statistics count every event exactly once, and
  every alert/flag keeps its identity (same id on replay, so on-call is paged once).
- :class:`KafkaOutage` — stop the broker for 10 s and restart it. Proves that producers
  (simulator, worker emits, dead letters) buffer and retry without loss or duplicates
  (idempotent producer), that consumers (worker, sink, notifier) resume from their committed
  offsets, and that nobody needs a restart by hand.
- :class:`ClickHouseOutage` — stop ClickHouse for 30 s. Proves the sink's backpressure: it
  pauses, retries the same batch with the same dedupe identity, commits only after the insert,
  so ClickHouse ends with every event exactly once (FINAL) and nothing goes to the DLQ.
- :class:`RedisOutage` — stop Redis for 30 s. Proves that the profile mirror (and the other
  Redis writers) survive the outage and converge: after it every profile in Redis equals the
  recomputation, with no event lost or applied twice.
- :class:`Rebalance` — add a second worker under load, then remove it (SIGTERM). Proves that
  partitions (and their tables) move between workers twice without loss or double counting,
  and that outputs are not raised twice by the worker that gains a partition.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cxstream.faults.scenario import Scenario


class ServiceControl(Protocol):
    """Stops and starts one stack service (``tests.support.services.LocalStack`` is one)."""

    def stop(self, name: str) -> object: ...

    def start(self, name: str) -> object: ...


class StackControl:
    """:class:`ServiceControl` over ``cxstream.stack.manager`` (the native local stack)."""

    def __init__(self, settings: object) -> None:
        self.settings = settings

    def stop(self, name: str) -> object:
        from cxstream.stack import manager

        return manager.stop_service(name, self.settings)  # type: ignore[arg-type]

    def start(self, name: str) -> object:
        from cxstream.stack import manager

        return manager.start_service(name, self.settings)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Injection:
    at: float
    fault: str
    action: str


@dataclass
class FaultLog:
    started: float = field(default_factory=time.monotonic)
    entries: list[Injection] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, fault: str, action: str) -> None:
        with self._lock:
            self.entries.append(Injection(time.monotonic() - self.started, fault, action))


class Fault(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def lane(self) -> str:
        """Its lane, "process" or "service": faults of one lane run one after another."""

    def inject(
        self, scenario: Scenario, control: ServiceControl, rng: random.Random, log: FaultLog
    ) -> None: ...


@dataclass
class WorkerKills:
    times: int = 5
    #: seconds between a worker being ready again and the next kill (uniform)
    gap: tuple[float, float] = (1.0, 6.0)
    #: outages (of this run) that the last kills land inside, one each: the worker dies with
    #: effects it could not write yet (Redis down) and restarts without the service
    during: tuple[str, ...] = ("redis",)
    name: str = "worker-kill"
    lane: str = "process"

    def inject(
        self, scenario: Scenario, control: ServiceControl, rng: random.Random, log: FaultLog
    ) -> None:
        inside = [s for s in self.during if s in scenario.outages][: self.times]
        for n in range(1, self.times + 1):
            scenario.sleep(rng.uniform(*self.gap))
            service = inside.pop(0) if n > self.times - len(inside) else None
            if service is not None and scenario.wait_for_outage(service, timeout=300):
                scenario.sleep(rng.uniform(1.0, 5.0))  # well inside it (outages last >= 10 s)
            # a random one of the workers running now
            with scenario.kafka_gate:
                role = rng.choice(scenario.workers() or ["worker-1"])
                scenario.kill(role, signal.SIGKILL)
                down = [s for s, state in scenario.outages.items() if state == "down"]
                note = f" while {', '.join(sorted(down))} down" if down else ""
                log.add(self.name, f"SIGKILL {role} ({n}/{self.times}){note}")
                scenario.start_worker(role)
            scenario.wait_worker(role, timeout=120)
            log.add(self.name, f"{role} restarted and serving")


@dataclass
class Outage:
    """Stop a stack service for ``seconds``, then start it and wait until it is healthy."""

    service: str
    seconds: float
    lane: str = "service"

    @property
    def name(self) -> str:
        return f"{self.service}-down"

    def inject(
        self, scenario: Scenario, control: ServiceControl, rng: random.Random, log: FaultLog
    ) -> None:
        gate = scenario.kafka_gate if self.service == "kafka" else contextlib.nullcontext()
        with gate:
            control.stop(self.service)
            scenario.outage(self.service, "down")
            log.add(self.name, f"{self.service} stopped for {self.seconds:.0f} s")
            try:
                scenario.sleep(self.seconds)
            finally:
                began = time.monotonic()
                scenario.outage(self.service, "over")  # no more kills wait for it
                control.start(self.service)  # waits until healthy
                took = time.monotonic() - began
                log.add(self.name, f"{self.service} healthy again ({took:.1f} s)")


def KafkaOutage(seconds: float = 10.0) -> Outage:  # noqa: N802 (reads as a fault type)
    return Outage("kafka", seconds)


def ClickHouseOutage(seconds: float = 30.0) -> Outage:  # noqa: N802
    return Outage("clickhouse", seconds)


def RedisOutage(seconds: float = 30.0) -> Outage:  # noqa: N802
    return Outage("redis", seconds)


@dataclass
class Rebalance:
    #: how long the second worker shares the load before it is removed
    hold_seconds: float = 15.0
    name: str = "rebalance"
    lane: str = "process"

    def inject(
        self, scenario: Scenario, control: ServiceControl, rng: random.Random, log: FaultLog
    ) -> None:
        role = f"worker-{len(scenario.ports) + 1}"
        with scenario.kafka_gate:
            scenario.start_worker(role)
        log.add(self.name, f"{role} added (group rebalances)")
        scenario.wait_worker(role, timeout=120)
        scenario.sleep(self.hold_seconds)
        code = scenario.stop_child(role)
        log.add(self.name, f"{role} removed by SIGTERM (exit {code})")


#: fault names of the command line -> factory
FAULTS: dict[str, Callable[..., Fault]] = {
    "worker-kill": WorkerKills,
    "kafka": KafkaOutage,
    "clickhouse": ClickHouseOutage,
    "redis": RedisOutage,
    "rebalance": Rebalance,
}


class Lanes:
    """One thread per lane, each running its faults in order; errors are kept for the verdict."""

    def __init__(
        self,
        scenario: Scenario,
        control: ServiceControl,
        faults: Sequence[Fault],
        rng: random.Random,
        log: FaultLog,
        *,
        lead_in: float = 5.0,
    ) -> None:
        self.errors: list[BaseException] = []
        lanes: dict[str, list[Fault]] = {}
        for fault in faults:
            lanes.setdefault(fault.lane, []).append(fault)
            if isinstance(fault, Outage):
                scenario.plan_outage(fault.service)
        # each lane gets its own generator seeded from rng: the schedule repeats with the seed
        seeds = {lane: rng.randrange(2**32) for lane in sorted(lanes)}

        def body(lane: str, items: list[Fault]) -> None:
            lane_rng = random.Random(seeds[lane])
            try:
                scenario.sleep(lead_in)
                for fault in items:
                    if scenario.stopping.is_set():
                        break
                    fault.inject(scenario, control, lane_rng, log)
            except BaseException as exc:  # the run still settles and verifies; the verdict fails
                log.add(lane, f"lane failed: {type(exc).__name__}: {exc}")
                self.errors.append(exc)

        self.threads = [
            # not daemons: an aborted run still waits for a lane to restart what it stopped
            threading.Thread(target=body, args=(lane, items), name=f"faults-{lane}")
            for lane, items in lanes.items()
        ]

    def start(self) -> Lanes:
        for thread in self.threads:
            thread.start()
        return self

    @property
    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self.threads)

    def join(self, timeout: float | None = None) -> None:
        for thread in self.threads:
            thread.join(timeout)


def describe(faults: Sequence[Fault]) -> list[str]:
    out = []
    for fault in faults:
        if isinstance(fault, WorkerKills):
            inside = (
                f" (the last inside the {'/'.join(fault.during)} outage)" if fault.during else ""
            )
            out.append(f"{fault.name}: SIGKILL a worker {fault.times}x{inside}, restart each time")
        elif isinstance(fault, Outage):
            out.append(f"{fault.name}: stop {fault.service} for {fault.seconds:.0f} s")
        elif isinstance(fault, Rebalance):
            out.append(f"{fault.name}: add a worker for {fault.hold_seconds:.0f} s, remove it")
        else:
            out.append(fault.name)
    return out
