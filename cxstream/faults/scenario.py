"""One fault run with known ground truth: its own namespace, the platform's children, traffic.

The platform is started the way ``cxstream demo`` starts it (same namespace rules, child
processes, on-call receiver wiring), minus the HTTP API, which no fault check reads: the on-call
receiver, one or more Faust workers running every processor, the ClickHouse sink and the
notifier. The ground truth is what reached Kafka: the simulator (seeded, publishing at a fixed
rate, writing its scenario labels) plus a few poison pills that must end as dead letters.

A child that exits without being told to (a crash, not an injected kill) is restarted by
:meth:`Scenario.supervise`, like a process supervisor would, and counted in
:attr:`Scenario.unplanned`: the verdict reports each one with its log.
"""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cxstream.demo.children import Child, OnCall, spawn, stop, tail
from cxstream.demo.cli import free_port, publish_poison
from cxstream.demo.namespace import Namespace, child_env, clean_slate, demo_settings
from cxstream.errors import ConfigurationError
from cxstream.settings import Settings

#: roles of the platform's long-running children (workers are ``worker-N``)
SERVICES = ("receiver", "sink", "notifier")


@dataclass(frozen=True)
class ScenarioConfig:
    events: int = 20_000
    rate: float = 200.0
    customers: int = 400
    seed: int = 8
    poison: int = 3
    #: topic prefix and ClickHouse database (dropped and recreated at the start of each run)
    namespace: str = "cxfault"
    #: short group session so that a SIGKILLed worker's partitions move on quickly
    session_timeout_seconds: float = 10.0
    #: processors the workers run (empty: all of ``processors.PROCESSORS``); to isolate one
    processors: tuple[str, ...] = ()
    log_dir: Path = Path(".cxstream/faults/logs")


@dataclass
class Exit:
    """A child that exited unplanned (restarted by the supervisor)."""

    role: str
    returncode: int | None
    log_tail: str
    at: float = field(default_factory=time.time)


@dataclass
class Memory:
    """Resident memory (MiB) per role: the first, the peak and the last sample."""

    first: dict[str, float] = field(default_factory=dict)
    peak: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)

    def sample(self, role: str, rss_mib: float) -> None:
        self.first.setdefault(role, rss_mib)
        self.peak[role] = max(self.peak.get(role, 0.0), rss_mib)
        self.last[role] = rss_mib


def rss_mib(pid: int) -> float | None:
    """Resident set size of ``pid`` from /proc (``None`` once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def ephemeral_ports() -> range | None:
    """The kernel's ephemeral port range (Linux; ``None`` elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    except (OSError, ValueError):
        return None
    return range(int(low), int(high) + 1)


def check_stack_ports(settings: Settings) -> None:
    """Refuse stack services on ephemeral ports: while one is stopped, a client retrying it
    can be given that very port as its own source port and connect to itself, which then
    blocks the service's restart (seen with Kafka in this suite)."""
    ephemeral = ephemeral_ports()
    if ephemeral is None:
        return
    stack = settings.stack
    ports = {"kafka": stack.kafka_port, "redis": stack.redis_port,
             "clickhouse": stack.clickhouse_port}  # fmt: skip
    inside = {name: port for name, port in ports.items() if port in ephemeral}
    if inside:
        raise ConfigurationError(
            f"fault suite: stack ports {inside} are in the ephemeral range "
            f"{ephemeral.start}-{ephemeral.stop - 1}; pick CX_STACK__*_PORT values below it"
        )


def cause(log: Path, lines: int = 30) -> str:
    """What made a child exit: its log from the first crash report (``Crashed reason`` or
    traceback) on, ``lines`` long, and its last line; else the log's tail. A Faust worker's
    tail is only its shutdown noise."""
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    text = [line for line in text if "|rdkafka#" not in line]  # librdkafka's retry chatter
    marks = ("Crashed reason", "Traceback (most recent call last)", "CRITICAL")
    first = next((i for i, line in enumerate(text) if any(m in line for m in marks)), None)
    if first is None:
        return "\n".join(text[-lines:])
    excerpt = text[first : first + lines]
    if first + lines < len(text):
        excerpt += ["...", text[-1]]
    return "\n".join(excerpt)


class Scenario:
    """The platform's children in one namespace; faults act on it through its methods.

    Thread-safe: fault lanes (threads) kill and start workers while the main thread supervises.
    """

    def __init__(self, base: Settings, config: ScenarioConfig) -> None:
        self.config = config
        run_id = time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(2)
        # a namespace of its own per run: a child orphaned by an earlier run (its parent died)
        # can never write into this run's topics or database
        prefix = f"{config.namespace}{run_id}"
        self.ns = Namespace(prefix, prefix, run_id)
        self.log_dir = config.log_dir / run_id
        # every worker gets a free web port; worker-1's is the one the observer reads
        self.ports: dict[str, int] = {"worker-1": free_port()}
        settings = base.model_copy(
            update={
                "worker": base.worker.model_copy(
                    update={
                        "web_port": self.ports["worker-1"],
                        "session_timeout_seconds": config.session_timeout_seconds,
                    }
                )
            }
        )
        self.settings = demo_settings(settings, self.ns, self.log_dir)
        self.oncall = OnCall.create(free_port(), self.log_dir, run_id)
        self.env = child_env(self.settings, self.ns)
        self.env.update(self.oncall.env())
        self.env["CX_WORKER__SESSION_TIMEOUT_SECONDS"] = str(config.session_timeout_seconds)
        self.children: dict[str, Child] = {}
        self.simulator: Child | None = None
        self.unplanned: list[Exit] = []
        self.memory = Memory()
        self.labels = self.log_dir / "scenario-labels.jsonl"
        self._lock = threading.RLock()
        self._generation: dict[str, int] = {}
        #: held while Kafka is down: worker kills wait for it (a worker started without a
        #: broker exits at once by design; the supervisor would restart it, but the suite's
        #: verdict should not have to tell designed fail-fast exits from crashes)
        self.kafka_gate = threading.Lock()
        #: set when the run is aborted: fault lanes stop waiting and restore what they stopped
        self.stopping = threading.Event()
        #: service -> "planned" | "down" | "over": lets a kill land inside an outage
        self.outages: dict[str, str] = {}
        self._outage_changed = threading.Condition()
        # children die with the thread that spawned them (parent-death signal): fault lanes end
        # before the run does, so every spawn goes through this one thread that lives until close
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="faults-spawner")

    # -- set-up --------------------------------------------------------------------------------

    def prepare(self) -> None:
        """A clean namespace: the previous run's topics, database and keys dropped; topics and
        migrations applied."""
        from sinks.clickhouse.backend import make_backend
        from sinks.clickhouse.migrations import migrate
        from streams.topics import ensure_topics, platform_topics

        check_stack_ports(self.settings)
        clean_slate(self.settings, self.ns)
        ensure_topics(self.settings, platform_topics(self.settings))
        backend = make_backend(self.settings)
        try:
            migrate(backend)
        finally:
            backend.close()

    def drop(self) -> None:
        """Drop this run's topics, database and Redis keys (after a passing run)."""
        clean_slate(self.settings, self.ns)

    def start_platform(self) -> None:
        self._spawn("receiver", self.oncall.receiver_args())
        self.start_worker("worker-1")
        self._spawn("sink", ["sink"])
        self._spawn("notifier", ["notify", "serve"])
        self.wait_worker("worker-1", timeout=120)

    def start_traffic(self) -> None:
        """Poison pills first, then the simulator at the configured rate (a child process)."""
        publish_poison(self.settings, self.config.poison)
        c = self.config
        self.simulator = self._spawner.submit(
            spawn,
            "simulator",
            ["simulate", "--events", str(c.events), "--rate", str(c.rate), "--customers",
             str(c.customers), "--seed", str(c.seed), "--labels", str(self.labels)],
            self.env,
            self.log_dir,
        ).result()  # fmt: skip

    # -- workers -------------------------------------------------------------------------------

    def worker_url(self, role: str) -> str:
        return f"http://127.0.0.1:{self.ports[role]}/v1/stats"

    def start_worker(self, role: str) -> Child:
        with self._lock:
            self.ports.setdefault(role, free_port())
            env = {
                "CX_WORKER__WEB_PORT": str(self.ports[role]),
                # Faust keeps per-worker state files here; two workers must not share them
                "CX_WORKER__DATA_DIR": str(self.log_dir / "data" / role),
            }
            chosen = [arg for name in self.config.processors for arg in ("--processor", name)]
            return self._spawn(role, ["worker", "--no-ensure-topics", *chosen], env)

    def wait_worker(self, role: str, timeout: float = 90) -> None:
        """Until ``role``'s web view answers (across restarts by the supervisor)."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.worker_url(role), timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        child = self.children.get(role)
        log = tail(child.log) if child is not None else "(not running)"
        raise TimeoutError(f"{role} not serving after {timeout:.0f} s:\n{log}")

    def kill(self, role: str, sig: int) -> None:
        """Send ``sig`` to a child and wait until it is gone (a planned exit)."""
        with self._lock:
            child = self.children.pop(role)
        child.process.send_signal(sig)
        child.process.wait(60)

    def stop_child(self, role: str) -> int | None:
        """Graceful stop (SIGTERM, then SIGKILL after 30 s): a planned exit."""
        with self._lock:
            child = self.children.pop(role)
        return stop(child)

    def workers(self) -> list[str]:
        with self._lock:
            return sorted(r for r in self.children if r.startswith("worker-"))

    # -- supervision ---------------------------------------------------------------------------

    def supervise(self) -> None:
        """Restart children that exited on their own; sample everyone's resident memory."""
        with self._lock:
            for role, child in list(self.children.items()):
                if child.running:
                    rss = rss_mib(child.process.pid)
                    if rss is not None:
                        self.memory.sample(role.split("-")[0], rss)
                    continue
                self.unplanned.append(Exit(role, child.process.returncode, cause(child.log)))
                del self.children[role]
                if role.startswith("worker-"):
                    self.start_worker(role)
                else:
                    args = self.oncall.receiver_args() if role == "receiver" else None
                    self._spawn(role, args or (["sink"] if role == "sink" else ["notify", "serve"]))

    def traffic_done(self) -> bool:
        """The simulator finished; raises if it failed (the ground truth would be unknown)."""
        if self.simulator is None:
            return False
        code = self.simulator.process.poll()
        if code not in (None, 0):
            raise RuntimeError(f"simulator exited {code}:\n{tail(self.simulator.log)}")
        return code == 0

    def sleep(self, seconds: float) -> None:
        """Wait in short steps (fault lanes call this; the main thread supervises meanwhile)."""
        self.stopping.wait(seconds)

    # -- outages (the service lane reports, the process lane may wait for one) -----------------

    def plan_outage(self, service: str) -> None:
        with self._outage_changed:
            self.outages.setdefault(service, "planned")

    def outage(self, service: str, state: str) -> None:
        with self._outage_changed:
            self.outages[service] = state
            self._outage_changed.notify_all()

    def wait_for_outage(self, service: str, timeout: float) -> bool:
        """Until ``service`` is down (True); False if its outage is over, not planned, the run
        stops or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._outage_changed:
            while self.outages.get(service) == "planned" and not self.stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._outage_changed.wait(min(left, 0.5))
            return self.outages.get(service) == "down"

    def close(self) -> None:
        if self.simulator is not None:
            stop(self.simulator)
        with self._lock:
            children = list(self.children.items())
            self.children.clear()
        # the receiver last: the notifier may still be delivering
        for _, child in sorted(children, key=lambda item: item[0] == "receiver"):
            stop(child)
        self._spawner.shutdown()

    # -- internals -----------------------------------------------------------------------------

    def _spawn(self, role: str, args: list[str], extra: dict[str, str] | None = None) -> Child:
        with self._lock:
            generation = self._generation.get(role, 0) + 1
            self._generation[role] = generation
            # a log per generation: a killed worker's log stays for the post-mortem
            env = {**self.env, **(extra or {})}
            name = f"{role}.{generation}"
            child = self._spawner.submit(spawn, name, args, env, self.log_dir).result()
            self.children[role] = child
            return child
