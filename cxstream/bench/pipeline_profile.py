"""Where the pipeline worker's CPU goes: py-spy over its catch-up, by processor and machinery.

``cxstream bench pipeline --opt profile=true`` samples the worker with ``py-spy record -f raw``
(collapsed stacks, one line ``frame;frame;... count``) from its start to its catch-up, and
:func:`breakdown` puts every sample in exactly one category: the first rule of :data:`SHARED`
whose pattern is in the stack (the Faust/aiokafka machinery every processor's table writes and
emits go through), else the processor whose file is on the stack, else the remaining shared
parts (fetch thread, drain loop, event loop). Shares times the worker's CPU per event give
microseconds of CPU per input event per category; samples of an idle event loop are left out.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from cxstream.errors import ServiceError

#: (category, pattern of a frame anywhere in the stack), first match wins; the processor's
#: name is appended to the categories that run inside its handler
SHARED: tuple[tuple[str, str], ...] = (
    ("table write (serialise, send_soon)", r"ManagedUserDict\.__(set|del)item__"),
    ("changelog buffer task (ProducerBuffer -> publish)", r"ProducerBuffer\._handle_pending"),
    ("commit: producer flush (wait_for per message)", r"ProducerBuffer\.flush_atmost"),
    ("commit (rest)", r"Consumer\.commit|Consumer\._commit_offsets"),
    ("aiokafka sender", r"aiokafka/producer/sender\.py"),
    ("emit (encode, send)", r"AppContext\.emit"),
    ("confluent producer", r"EventProducer\."),
    ("lane decode", r"BatchDecoder\.decode"),
    ("lane checks", r"BatchDecoder\.checked"),
)
#: file prefix -> processor
OWNERS: tuple[tuple[str, str], ...] = (
    ("processors/profiles", "profiles"),
    ("processors/reco", "reco"),
    ("online_models/reco", "reco"),
    ("processors/security", "security"),
    ("online_models/anomaly", "security"),
    ("processors/sla", "sla"),
    ("processors/kpis", "kpis"),
    ("processors/channel_counts", "channel_counts"),
    ("processors/erasure", "erasure"),
)
#: categories inside a handler that are named per processor
_PER_OWNER = ("table write", "emit", "confluent producer")
REST: tuple[tuple[str, str], ...] = (
    ("fetch (consumer thread)", r"ConsumerThread|aiokafka/consumer/|aiokafka/protocol/"),
    ("lane (ack, misc)", r"BatchLane\.run"),
    ("drain loop (messages, tracking)", r"_drain_messages"),
)
IDLE = "idle (event loop select)"
_FILE = re.compile(r"\(([^()]*):\d+\)$")


def parse(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    """``(frames outermost first, samples)`` of py-spy's raw (collapsed) output."""
    out = []
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack and count.isdigit():
            out.append((stack.split(";"), int(count)))
    return out


def owner(frames: list[str]) -> str | None:
    """The processor whose code is outermost on the stack (its handler or timer)."""
    for frame in frames:
        match = _FILE.search(frame)
        if match is None:
            continue
        for prefix, name in OWNERS:
            if match.group(1).startswith(prefix):
                return name
    return None


def category(frames: list[str]) -> str:
    stack = ";".join(frames)
    who = owner(frames)
    for name, pattern in SHARED:
        if re.search(pattern, stack):
            return f"{name} [{who}]" if who and name.startswith(_PER_OWNER) else name
    if who is not None:
        return f"processor {who} (own code)"
    for name, pattern in REST:
        if re.search(pattern, stack):
            return name
    # the loop waiting in select (or a bare loop iteration): no work of ours
    if "select" in frames[-1] or frames[-1].startswith("BaseEventLoop._run_once"):
        return IDLE
    return "other (asyncio, Faust services)"


def breakdown(stacks: list[tuple[list[str], int]]) -> dict[str, float]:
    """Share of the busy samples per category (idle samples are reported, not counted)."""
    counts: Counter[str] = Counter()
    for frames, n in stacks:
        counts[category(frames)] += n
    idle = counts.pop(IDLE, 0)
    busy = sum(counts.values())
    if not busy:
        return {}
    shares = {name: round(n / busy, 4) for name, n in counts.most_common()}
    shares[IDLE] = round(idle / (busy + idle), 4)
    return shares


def figures(path: Path, cpu_us_per_event: float | None) -> dict[str, float]:
    """``profile.<category>`` as µs of worker CPU per input event (share when CPU is unknown)."""
    shares = breakdown(parse(path.read_text().splitlines()))
    totals = by_processor(shares)
    out: dict[str, float] = {}
    for prefix, values in (("total", totals), ("", shares)):
        for name, share in values.items():
            label = f"{prefix}.{name}" if prefix else name
            if name == IDLE or cpu_us_per_event is None:
                out[f"share.{label}"] = share
            else:
                out[f"us_per_event.{label}"] = round(share * cpu_us_per_event, 1)
    return out


def by_processor(shares: dict[str, float]) -> dict[str, float]:
    """Each processor's own code plus what its handler spent in shared calls ([name] suffix),
    and ``shared`` for the rest (lanes, fetch, commit, changelog task, event loop)."""
    totals: dict[str, float] = {}
    for name, share in shares.items():
        if name == IDLE:
            continue
        match = re.fullmatch(r"processor (\w+) \(own code\)|.* \[(\w+)\]", name)
        who = (match.group(1) or match.group(2)) if match else "shared"
        totals[who] = round(totals.get(who, 0.0) + share, 4)
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


class Sampler:
    """``py-spy record`` of one process until :meth:`stop` (SIGINT makes it write the file)."""

    def __init__(self, pid: int, path: Path, rate: int = 200) -> None:
        self.path = path
        executable = Path(sys.executable).with_name("py-spy")
        if not executable.exists():
            raise ServiceError(f"bench pipeline: profile=true needs py-spy ({executable})")
        # nonblocking: the worker is not paused per sample (its rate stays what it was)
        self.process = subprocess.Popen(
            [str(executable), "record", "-r", str(rate), "-f", "raw", "-o", str(path),
             "--pid", str(pid), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip

    def stop(self, timeout: float = 60) -> Path:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            _, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.process.kill()
            raise ServiceError(f"bench pipeline: py-spy did not stop in {timeout:.0f} s") from exc
        if not self.path.exists():
            message = (err or b"").decode(errors="replace").strip()[-500:]
            raise ServiceError(f"bench pipeline: py-spy wrote no profile to {self.path}: {message}")
        return self.path
