"""The demo's child processes, and the on-call wiring (rotations pointing at a local receiver)."""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

#: the demo's on-call rotations: department -> members (each paged at its own receiver path)
ROTATIONS: dict[str, tuple[str, ...]] = {
    "customer_service": ("cs-ana", "cs-ben"),
    "risk_control": ("risk-chen", "risk-dara"),
    "it": ("it-eve", "it-femi"),
}


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def running(self) -> bool:
        return self.process.poll() is None


#: prctl option "deliver this signal to me when my parent thread dies" (linux/prctl.h)
_PR_SET_PDEATHSIG = 1


def _parent_death_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when the spawning thread dies.

    Own sessions keep Ctrl-C away from children, so without this a SIGKILLed (or crashed) demo
    or fault suite leaves orphans that hold ports and keep consuming. Everything is resolved
    here, in the parent: after fork only async-signal-safe work is allowed (no imports, no
    locks). The kernel signals when the *thread* that forked exits, so spawn from threads that
    live as long as the children should. ``None`` off Linux.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()
    kill, exit_now, getppid = signal.SIGKILL, os._exit, os.getppid

    def hook() -> None:
        if prctl(_PR_SET_PDEATHSIG, kill, 0, 0, 0) != 0:
            exit_now(127)
        if getppid() != parent:  # the parent died between fork and prctl
            exit_now(127)

    return hook


def spawn(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Child:
    """``python -m cxstream.cli ARGS`` with its output in ``log_dir/NAME.log``.

    The child dies with its parent (Linux parent-death signal) so that no orphan outlives a
    demo or fault run that was killed.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    handle = log.open("wb")
    # own session: Ctrl-C in the terminal reaches only the demo, which stops children in order
    proc = subprocess.Popen(
        [sys.executable, "-m", "cxstream.cli", *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        preexec_fn=_parent_death_hook(),
    )
    handle.close()
    return Child(name, proc, log)


def stop(child: Child, timeout: float = 30.0) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if child.process.poll() is None:
        child.process.send_signal(signal.SIGTERM)
        try:
            child.process.wait(timeout)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
    return child.process.returncode


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass(frozen=True)
class OnCall:
    """A local Standard Webhooks receiver standing in for the on-call staff's phones."""

    port: int
    secret: str
    #: what the receiver accepted (one JSON line per delivery, deduplicated by webhook-id)
    received: Path

    @classmethod
    def create(cls, port: int, log_dir: Path, run_id: str) -> OnCall:
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        return cls(port, secret, log_dir / f"oncall-{run_id}.jsonl")

    def env(self) -> dict[str, str]:
        """``CX_NOTIFY__*`` for the notifier: one rotation per department, paging the receiver."""
        base = f"http://127.0.0.1:{self.port}/oncall"
        rotations = [
            {
                "name": department,
                "members": [
                    {"name": member, "webhook_url": f"{base}/{department}/{member}"}
                    for member in members
                ],
                "shift_hours": 8,
                "channels": ["webhook"],
            }
            for department, members in ROTATIONS.items()
        ]
        routes = [{"department": d, "rotation": d} for d in ROTATIONS]
        return {
            "CX_NOTIFY__ROTATIONS": json.dumps(rotations),
            "CX_NOTIFY__ROUTES": json.dumps(routes),
            "CX_NOTIFY__WEBHOOK_SECRETS": json.dumps([self.secret]),
            # the demo's receiver answers at once; fail fast if it is gone
            "CX_NOTIFY__RETRY_MAX_ATTEMPTS": "4",
        }

    def receiver_args(self) -> list[str]:
        return [
            "notify",
            "receiver",
            "--port",
            str(self.port),
            "--secret",
            self.secret,
            "--jsonl",
            str(self.received),
        ]

    def deliveries(self) -> list[dict[str, object]]:
        """Every delivery the receiver accepted so far, oldest first."""
        out: list[dict[str, object]] = []
        with contextlib.suppress(OSError):
            for line in self.received.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out


@contextlib.contextmanager
def running(children: list[Child]) -> Iterator[list[Child]]:
    """Stop ``children`` in reverse order when the block ends."""
    try:
        yield children
    finally:
        for child in reversed(children):
            stop(child)
