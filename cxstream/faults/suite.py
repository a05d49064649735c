"""A whole fault run: set up, start the platform and the traffic, inject, settle, verify."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cxstream.demo.checks import Check
from cxstream.faults.faults import Fault, FaultLog, Lanes, ServiceControl, describe
from cxstream.faults.scenario import Scenario, ScenarioConfig
from cxstream.settings import Settings


@dataclass
class Verdict:
    checks: list[Check]
    injected: FaultLog
    settled_seconds: float | None
    seconds: float
    log_dir: str
    lane_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(ok for ok, _ in self.checks)

    def lines(self) -> list[str]:
        out = ["injected:"]
        out += [f"  {e.at:6.1f} s  {e.fault:<14} {e.action}" for e in self.injected.entries]
        out.append("checked:")
        out += [f"  {'ok  ' if ok else 'FAIL'} {text}" for ok, text in self.checks]
        out.append(f"run took {self.seconds:.0f} s; logs in {self.log_dir}")
        return out


def run(
    base: Settings,
    config: ScenarioConfig,
    faults: Sequence[Fault],
    control: ServiceControl,
    *,
    settle_timeout: float = 180.0,
    memory_limit_mib: float = 1536.0,
    status_every: float = 0.0,
    keep: bool = False,
    say: Callable[[str], None] = print,
) -> Verdict:
    """Run ``faults`` (in their lanes) during ``config``'s traffic, then settle and verify.

    ``status_every`` > 0 prints a status line that often while the traffic runs (the soak).
    """
    from cxstream.faults.verify import observer_for, settle, verify

    began = time.monotonic()
    scenario = Scenario(base, config)
    say(f"namespace {scenario.ns.topic_prefix!r} (run {scenario.ns.run_id}), logs in "
        f"{scenario.log_dir}")  # fmt: skip
    say("faults: " + "; ".join(describe(faults)))
    log = FaultLog()
    observer = None
    lanes: Lanes | None = None
    drop = False
    try:
        scenario.prepare()
        scenario.start_platform()
        say(f"platform up in {time.monotonic() - began:.0f} s; traffic: {config.events:,} "
            f"events at {config.rate:,.0f}/s, seed {config.seed}")  # fmt: skip
        observer = observer_for(scenario)
        scenario.start_traffic()
        lanes = Lanes(scenario, control, faults, random.Random(config.seed), log).start()
        printed = time.monotonic()
        while lanes.alive or not scenario.traffic_done():
            scenario.supervise()
            time.sleep(0.5)
            if status_every and time.monotonic() - printed >= status_every:
                printed = time.monotonic()
                say(status_line(scenario, observer, began))
        lanes.join()
        say(f"faults done and traffic in after {time.monotonic() - began:.0f} s; settling")
        settled, last = settle(scenario, observer, settle_timeout)
        checks = verify(scenario, observer, settled, last, settle_timeout, memory_limit_mib)
        errors = [f"{type(e).__name__}: {e}" for e in lanes.errors]
        if errors:
            checks.insert(0, (False, "fault lanes failed: " + "; ".join(errors)))
        verdict = Verdict(checks, log, settled, time.monotonic() - began, str(scenario.log_dir),
                       errors)  # fmt: skip
        drop = verdict.ok and not keep  # a failed run keeps its namespace for the post-mortem
        return verdict
    finally:
        if lanes is not None and lanes.alive:
            say("aborting: fault lanes restore what they stopped")
            scenario.stopping.set()
            lanes.join()
        scenario.close()
        if observer is not None:
            observer.close()
        if drop:
            scenario.drop()


def status_line(scenario: Scenario, observer: object, began: float) -> str:
    from cxstream.demo.observe import Observer

    assert isinstance(observer, Observer)
    try:
        snap = observer.snapshot()
    except Exception as exc:  # a stopped service: say so and go on
        return f"{time.monotonic() - began:6.0f} s  status unavailable: {exc}"
    lag = ", ".join(f"{k} {v if v is not None else '-'}" for k, v in snap.lag.items())
    rss = ", ".join(f"{k} {v:.0f}" for k, v in sorted(scenario.memory.last.items()))
    return (
        f"{time.monotonic() - began:6.0f} s  produced {sum(snap.produced.values()):,}  "
        f"lag [{lag}]  dead letters {snap.dead_letters}  on-call {snap.alerts_received}  "
        f"RSS MiB [{rss}]  unplanned exits {len(scenario.unplanned)}"
    )
