"""The fault suite (issue 8): the whole platform under faults, then exact checks.

One bounded run (CI): 20k simulated events at 200/s through every processor, the sink and the
notifier while two fault lanes run — the process lane SIGKILLs the worker 5 times at random
moments, the last inside the Redis outage (restarting it each time), and then adds a second
worker and removes it again; the
service lane stops Kafka for 10 s, ClickHouse for 30 s and Redis for 30 s (restarting each and
waiting until healthy). Afterwards the run must settle by itself and every check of
:mod:`cxstream.faults.verify` must pass: ClickHouse holds every produced event once (FINAL),
Redis profiles equal an independent recomputation, on-call got every alert and flag once,
dead letters only for the poison pills, no crash, memory under the limit.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from cxstream.faults.faults import (
    ClickHouseOutage,
    KafkaOutage,
    Rebalance,
    RedisOutage,
    WorkerKills,
)
from cxstream.faults.scenario import ScenarioConfig
from cxstream.faults.suite import run
from tests.support.services import free_port


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_platform_survives_the_faults_intact(local_stack: Any, tmp_path: Path) -> None:
    faulthandler.enable()
    faults = [WorkerKills(times=5), KafkaOutage(10), ClickHouseOutage(30), RedisOutage(30),
              Rebalance(hold_seconds=10)]  # fmt: skip
    config = ScenarioConfig(
        events=20_000, rate=200, customers=300, seed=8, namespace="cxfault", log_dir=tmp_path
    )
    verdict = run(local_stack.settings, config, faults, local_stack, settle_timeout=120)
    report = "\n".join(verdict.lines())
    print(report)  # what was injected and checked, also when it passes (pytest -s)
    injected = {entry.fault for entry in verdict.injected.entries}
    assert injected >= {"worker-kill", "kafka-down", "clickhouse-down", "redis-down", "rebalance"}
    assert sum("SIGKILL" in e.action for e in verdict.injected.entries) == 5
    # a worker died with effects it could not write to Redis and restarted without Redis
    assert any("while redis down" in e.action for e in verdict.injected.entries), report
    assert verdict.ok, report


def _alive(pid: int) -> bool:
    """``pid`` runs (a zombie nobody reaped yet counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_children_die_with_the_process_that_spawned_them(tmp_path: Path) -> None:
    """A suite or demo killed by SIGKILL leaves no orphan (they would keep ports and consume)."""
    parent_code = textwrap.dedent(
        f"""
        import os, time
        from pathlib import Path
        from cxstream.demo.children import OnCall, spawn
        oncall = OnCall.create({free_port()}, Path({str(tmp_path)!r}), "t")
        # spawned by the main thread, which sleeps: only the process's death can end the child
        child = spawn("receiver", oncall.receiver_args(), dict(os.environ), Path({str(tmp_path)!r}))
        print(child.process.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(30)
        deadline = time.monotonic() + 30
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), f"child {child} outlived its SIGKILLed parent {parent.pid}"
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
