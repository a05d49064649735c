"""The fault suite (issue 8): the whole platform under faults, then exact checks.

One bounded run (CI): 20k simulated events at 200/s through every processor, the sink and the
notifier while two fault lanes run — the process lane SIGKILLs the worker 5 times at random
moments (restarting it each time) and then adds a second worker and removes it again; the
service lane stops Kafka for 10 s, ClickHouse for 30 s and Redis for 30 s (restarting each and
waiting until healthy). Afterwards the run must settle by itself and every check of
:mod:`cxstream.faults.verify` must pass: ClickHouse holds every produced event once (FINAL),
Redis profiles equal an independent recomputation, on-call got every alert and flag once,
dead letters only for the poison pills, no crash, memory under the limit.
"""

from __future__ import annotations

import faulthandler
import os
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


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(
    not os.environ.get("CX_TEST_FAULT_SUITE"),
    reason="not yet proven green: set CX_TEST_FAULT_SUITE=1 to run it (see README, Limits)",
)
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
    assert verdict.ok, report
