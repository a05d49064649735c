"""The main job (`cxstream demo`) runs end to end and its own checks pass.

The demo drops and recreates its namespace, starts the worker and the sink as child processes,
publishes simulated traffic plus poison pills and exits non-zero unless the worker's counts, the
dead letters and ClickHouse's rows all match what was produced.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from tests.support.services import free_port


@pytest.mark.slow
def test_demo_runs_end_to_end_and_its_checks_pass(local_stack: Any) -> None:
    env = dict(os.environ)
    env["CX_WORKER__WEB_PORT"] = str(free_port())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cxstream.cli",
            "demo",
            "--events",
            "4000",
            "--customers",
            "300",
            "--rate",
            "0",
            "--namespace",
            "cxdemotest",
            "--settle-timeout",
            "60",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "5/5 checks" in output
    assert "FAIL" not in output
    assert output.count(" ok ") >= 3
