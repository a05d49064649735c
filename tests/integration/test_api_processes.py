"""``cxstream api --processes 2``: two processes answer on one port; SIGTERM stops them all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.services import LocalStack, free_port

pytestmark = pytest.mark.integration

CXSTREAM = str(Path(sys.executable).with_name("cxstream"))


def _pid(url: str) -> int | None:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:  # new connection
            pid: int = json.loads(response.read())["pid"]
            return pid
    except OSError:
        return None


def test_two_processes_share_the_port_and_stop_on_sigterm(local_stack: LocalStack) -> None:
    settings = local_stack.settings
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CX_")}
    env.update(
        CX_KAFKA__BOOTSTRAP_SERVERS=settings.kafka.bootstrap_servers,
        CX_REDIS__URL=settings.redis.url,
        CX_API__WORKER_URL="",
        CX_LOG_LEVEL="WARNING",
    )
    proc = subprocess.Popen([CXSTREAM, "api", "--port", str(port), "--processes", "2"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        pids: set[int] = set()
        deadline = time.monotonic() + 60
        while len(pids) < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, f"cxstream api exited with {proc.returncode}"
            pid = _pid(url)
            if pid is None:
                time.sleep(0.2)
            else:
                pids.add(pid)
        assert len(pids) == 2, f"answers came from {pids} only"
        assert proc.pid not in pids  # the parent only supervises
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert _pid(url) is None  # nothing listens any more
        for pid in pids:  # reaped by the parent
            assert not Path(f"/proc/{pid}").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
