"""``cxstream bench api``: the HTTP API as deployed (``cxstream api`` in its own process).

The load generator runs in a separate (spawned) process: a minimal asyncio HTTP/1.1 client
(uvloop when importable) on raw streams, ``connections`` (8) keep-alive connections, one request
in flight per connection; it costs ~40 us of CPU per request (``client_cpu_us_per_request``).
Open loop: request i is due at ``start + i / rate``; it waits in a queue while every connection
is busy, and its latency runs from its *due* time to the last byte of its answer, so neither a
stalled server nor a late generator hides queued requests (no coordinated omission;
``send_lag_p99_ms`` is how late the generator itself was). The first ``warmup`` (1) s do not
count. Server CPU per request (``server_cpu_us_per_request``) is read from /proc for the server
process tree around each phase (``server_idle_cpu_share``: what it burns idle).

Phases and figures:

- ``healthz_max``: closed loop on ``GET /healthz`` for ``ref_seconds`` (3): the most this
  generator and the HTTP stack can do at all (the reference, ``loadgen_max_rate_healthz_per_s``);
  ``healthz``: ``/healthz`` open loop at ``rate``: the latency floor of the machine in that run.
- ``profile``: ``GET /v1/customers/{id}/profile`` open loop at ``rate`` (1000) requests/s for
  ``duration`` (10) s over ``profiles`` (10000) customers preloaded in Redis in the mirror layout
  (:func:`processors.profiles.mirror.encode_fields` of a real
  :func:`processors.profiles.view.profile_view`). Target p99 <= 5 ms. ``profile_max``: closed
  loop, the server's capacity.
- ``ingest``: ``POST /v1/events`` of ``events`` (200000) ``channel_interaction`` events in
  batches of ``batch`` (1000), ``concurrency`` (4) requests in flight (aiohttp client in this
  process); events/s from the first request to the last answer (every answer means Kafka
  acknowledged its events). Target >= 20k. Reference ``raw_producer``: the same records through
  :class:`EventProducer` in this process, in the same run. ``ingest=false`` skips it.

Options: ``processes`` / ``loop`` (the server's ``api.processes`` / ``api.loop``),
``server_root`` (run another checkout's server code under this generator, for before/after),
``lookups=false`` (ingest only, after the /healthz reference).

Measured 2026-12-03 on the 2 shared vCPUs, load average 3-11 from other work (``p99``: each
run's profile p99 at 1000/s, sorted; ``max``: median closed-loop rate; ``srv us``: median
server CPU per request at 1000/s / at saturation):

| server (runs) | p99 at 1000/s (ms) | max/s | srv us |
|---|---|---|---|
| before, measured by the old in-process aiohttp client (1) | 1,755 (905/s reached) | - | - |
| before: JSON decode + re-encode, asyncio (5) | 7, 99, 473, 508, 1336 | 1,546 | 307 / 250 |
| after, asyncio loop (2) | 172, 618 | 1,960 | 301 / 256 |
| after, uvloop, 1 process = default (7) | 33, 36, 341, 577, 586, 631, 920 | 2,074 | 280 / 236 |
| after, uvloop, 2 processes, SO_REUSEPORT (5) | 86, 89, 233, 277, 803 | 2,304 | 335 / 270 |

The generator's own reference in the same runs: 2.4-12.3k /healthz per second (median ~6.5k)
at ~40 us of its CPU per request; /healthz open-loop p99: 1.8-805 ms (median ~28 ms).

What it says: the first measurement's 1.7 s was mostly its in-process aiohttp client
saturating the same cores. Building the body from the stored JSON values, uvloop and no
per-command ``wait_for`` in redis-py cut the CPU per lookup only ~6-9 % and raised capacity
~1.3x (noisy); the rest is aiohttp's request handling and loopback syscalls (py-spy: socket
writes ~25 % of the loop, redis-py ~30 %, aiohttp ~50 %). One process needs ~30 % of a core at
1000/s; when the other work leaves it less (load 5-11 on 2 cores), requests queue for every
variant and even the trivial /healthz misses 5 ms at p99, so p99 <= 5 ms was not met in these
runs (closest: 4.3 ms, 2 processes at load 5, before the redis-py timeout change; 7 ms for the
original server at load 4). Two processes cost ~20 % more CPU per request but get two CPU
shares under contention (median p99 233 vs 577 ms); ``api.processes`` stays 1 by default
because each process answers ``/metrics`` for itself only (``CX_API__PROCESSES=2`` on a busy
2-core host). ``bench-results/api.json``: the default run at load 7.5 (p50 0.8 ms, p99 36 ms,
ingest 20,048 events/s = 0.66 of the raw producer).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from cxstream.bench.cleanup import delete_redis_prefix
from cxstream.bench.produce import sample_events
from cxstream.errors import ServiceError
from cxstream.settings import Settings, section_environment
from streams.codec import build_codec
from streams.producer import EventProducer
from streams.topics import delete_topics, ensure_topics, platform_topics

EVENT = "channel_interaction"
HOST = "127.0.0.1"
KEY = "bench-api-key"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _server_env(settings: Settings, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CX_")}
    env.update(
        CX_KAFKA__BOOTSTRAP_SERVERS=settings.kafka.bootstrap_servers,
        CX_KAFKA__TOPIC_PREFIX=settings.kafka.topic_prefix,
        CX_API__HOST=HOST,
        CX_API__PORT=str(port),
        CX_API__KEYS=json.dumps({"bench": KEY}),
        # the load is the point: the limiter must not shape it
        CX_API__RATE_LIMIT_PER_SECOND="1000000",
        CX_API__RATE_LIMIT_BURST="1000000",
        CX_API__WORKER_URL="",
        CX_LOG_LEVEL="WARNING",
    )
    env.update(section_environment(settings, "redis"))
    return env


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"cxstream api exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise ServiceError(f"cxstream api at {url} not ready after {timeout} s")


def _wait_processes(url: str, processes: int, timeout: float = 30) -> None:
    """Until every server process listens (else early connections all land on the first)."""
    if processes == 1:
        return
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < processes:
        if time.monotonic() > deadline:
            raise ServiceError(f"only {len(seen)} of {processes} API processes answered")
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:  # new connection
            seen.add(json.loads(response.read())["pid"])
    time.sleep(0.5)  # let the last ones finish starting


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {
        "p50_ms": at(0.50),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "max_ms": ordered[-1] * 1000,
    }


async def _preload(settings: Settings, count: int) -> list[str]:
    from cxstream.redis_connection import async_redis
    from processors.profiles.mirror import encode_fields, profile_key
    from processors.profiles.view import profile_view

    ids = [f"bench-{i:06d}" for i in range(count)]
    redis = async_redis(settings, timeout=None)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for i, customer_id in enumerate(ids):
                stored = {
                    "c": {"app": [3 + i % 7, 1_796_000_000_000], "web": [i % 5, 1_795_000_000_000]},
                    "ir": [4, 1],
                    "ls": 1_796_000_000_000,
                    "k": {"personalisation": [1, 1_790_000_000_000]},
                }
                view = profile_view(customer_id, stored)
                pipe.hset(profile_key(settings, customer_id), mapping=encode_fields(view, 5, 1))  # type: ignore[arg-type]
            await pipe.execute()
    finally:
        await redis.aclose()
    return ids


# --- load generator: runs in its own (spawned) process, so it never shares the server's GIL


def _request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nX-API-Key: {KEY}\r\n\r\n".encode()


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    """One keep-alive request/response; the body is read in full and dropped."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:
        raise ServiceError(f"load generator: answer without Content-Length: {head[:200]!r}")
    end = lower.index(b"\r\n", at + 17)
    await reader.readexactly(int(head[at + 17 : end]))
    return int(head[9:12])


async def _open_loop(
    port: int, requests: list[bytes], rate: float, duration: float, warmup: float, connections: int
) -> dict[str, Any]:
    """``rate`` requests/s on a fixed schedule over ``connections`` keep-alive connections.

    A request waits in the queue while every connection is busy; its latency runs from its
    scheduled time, so queueing (and the generator's own lateness) counts against the server.
    """
    clock = time.perf_counter  # uvloop's loop.time() has whole-millisecond resolution
    jobs: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    streams = [await asyncio.open_connection(HOST, port) for _ in range(connections)]
    start = clock() + 0.01

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (job := await jobs.get()) is not None:
            index, scheduled = job
            status = await _exchange(reader, writer, requests[index % len(requests)])
            statuses[status] = statuses.get(status, 0) + 1
            if scheduled - start >= warmup:
                latencies.append(clock() - scheduled)
        writer.close()

    workers = [asyncio.ensure_future(connection(r, w)) for r, w in streams]
    total = int(rate * (duration + warmup))
    lags: list[float] = []
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(clock() - scheduled)
        jobs.put_nowait((i, scheduled))
    for _ in workers:
        jobs.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = clock() - start
    return {
        "requests": total,
        "achieved_rate_per_s": total / elapsed,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        **_percentiles(latencies),
        "send_lag_p99_ms": _percentiles(lags).get("p99_ms", 0.0),
    }


async def _closed_loop(
    port: int, requests: list[bytes], seconds: float, connections: int
) -> dict[str, Any]:
    """As fast as possible: each connection sends its next request when the last answered."""
    clock = time.perf_counter
    streams = [await asyncio.open_connection(HOST, port) for _ in range(connections)]
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    stop = clock() + seconds

    async def connection(
        offset: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        index = offset
        while (sent := clock()) < stop:
            status = await _exchange(reader, writer, requests[index % len(requests)])
            latencies.append(clock() - sent)
            statuses[status] = statuses.get(status, 0) + 1
            index += connections
        writer.close()

    start = clock()
    await asyncio.gather(*(connection(i, r, w) for i, (r, w) in enumerate(streams)))
    elapsed = clock() - start
    return {
        "requests": len(latencies),
        "rate_per_s": len(latencies) / elapsed,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        **_percentiles(latencies),
    }


def _load_phase(kind: str, port: int, paths: list[str], options: dict[str, Any]) -> dict[str, Any]:
    """Entry point of the load process: one phase, plus the generator's own CPU time."""
    try:
        import uvloop

        runner: Any = uvloop.run
        client_loop = "uvloop"
    except ImportError:
        runner, client_loop = asyncio.run, "asyncio"
    requests = [_request(path) for path in paths]
    cpu = time.process_time()
    if kind == "open":
        result = runner(_open_loop(port, requests, **options))
    else:
        result = runner(_closed_loop(port, requests, **options))
    cpu = time.process_time() - cpu
    return {
        **result,
        "client_cpu_us_per_request": cpu / max(1, result["requests"]) * 1e6,
        "client_loop": client_loop,
    }


async def _ingest_load(url: str, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
    import aiohttp

    headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
    accepted = 0
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    queue = list(reversed(bodies))
    async with aiohttp.ClientSession() as session:
        loop = asyncio.get_running_loop()

        async def worker() -> None:
            nonlocal accepted
            while queue:
                body = queue.pop()
                sent = loop.time()
                async with session.post(f"{url}/v1/events", data=body, headers=headers) as r:
                    answer = await r.json()
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                latencies.append(loop.time() - sent)
                accepted += answer.get("accepted", 0)

        start = loop.time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = loop.time() - start
    return {
        "accepted": accepted,
        "seconds": elapsed,
        "events_per_s": accepted / elapsed,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "request": _percentiles(latencies),
    }


def _raw_producer(settings: Settings, records: list[dict[str, Any]]) -> float:
    with EventProducer(settings, build_codec(settings)) as producer:
        started = time.perf_counter()
        for record in records:
            producer.produce(EVENT, record)
        producer.flush(120)
        return len(records) / (time.perf_counter() - started)


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of ``pid`` and all its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pending.extend(int(child) for child in children.read().split())
        except OSError:  # exited meanwhile
            continue
    return total


def run(settings: Settings, **options: Any) -> dict[str, Any]:
    rate = float(options.get("rate", 1000))
    duration = float(options.get("duration", 10))
    warmup = float(options.get("warmup", 1))
    connections = int(options.get("connections", 8))
    ref_seconds = float(options.get("ref_seconds", 3))
    profiles = int(options.get("profiles", 10_000))
    events = int(options.get("events", 200_000))
    batch = int(options.get("batch", 1000))
    concurrency = int(options.get("concurrency", 4))
    processes = int(options.get("processes", settings.api.processes))
    loop = str(options.get("loop", settings.api.loop))
    ingest_on = bool(options.get("ingest", True))
    lookups_on = bool(options.get("lookups", True))
    # A/B against another checkout: its server code runs, this load generator measures
    server_root = options.get("server_root")

    run_id = uuid.uuid4().hex[:8]
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"topic_prefix": f"bench-api-{run_id}"})}
    )
    specs = [s for s in platform_topics(settings) if s.name == settings.topic(EVENT)]
    ensure_topics(settings, specs)
    port = _free_port()
    url = f"http://{HOST}:{port}"
    load_before = os.getloadavg()
    env = _server_env(settings, port)
    env.update(CX_API__PROCESSES=str(processes), CX_API__LOOP=loop)
    if server_root:
        env["PYTHONPATH"] = str(server_root)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from cxstream.api.cli import api; api()"], env=env
    )
    figures: dict[str, Any] = {}
    spawn = multiprocessing.get_context("spawn")
    try:
        ids = asyncio.run(_preload(settings, profiles if lookups_on else 1))
        _wait_ready(url, proc)
        _wait_processes(url, processes)
        profile_paths = [f"/v1/customers/{customer_id}/profile" for customer_id in ids]
        open_options = {
            "rate": rate,
            "duration": duration,
            "warmup": warmup,
            "connections": connections,
        }
        closed_options = {"seconds": ref_seconds, "connections": connections}
        phases = [
            ("healthz_max", "closed", ["/healthz"], closed_options),
            ("healthz", "open", ["/healthz"], open_options),
            ("profile", "open", profile_paths, open_options),
            ("profile_max", "closed", profile_paths, closed_options),
        ]
        if not lookups_on:
            phases = phases[:1]  # the generator's reference only
        # CPU the idle server burns anyway (librdkafka's threads, the delivery poller)
        idle = _cpu_seconds(proc.pid)
        time.sleep(2)
        figures["server_idle_cpu_share"] = (_cpu_seconds(proc.pid) - idle) / 2
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as load:
            load.submit(time.sleep, 0).result()  # the load process is up before timing
            for name, kind, paths, phase_options in phases:
                cpu = _cpu_seconds(proc.pid)
                result = load.submit(_load_phase, kind, port, paths, phase_options).result()
                cpu = _cpu_seconds(proc.pid) - cpu
                result["server_cpu_us_per_request"] = cpu / max(1, result["requests"]) * 1e6
                figures[name] = result
        if ingest_on:
            records = sample_events(events, seed=21)
            items = [{"type": EVENT, "event": r} for r in records]
            bodies = [
                json.dumps({"events": items[i : i + batch]}).encode()
                for i in range(0, len(items), batch)
            ]
            cpu = _cpu_seconds(proc.pid)
            figures["ingest"] = ingest = asyncio.run(_ingest_load(url, bodies, concurrency))
            cpu = _cpu_seconds(proc.pid) - cpu
            ingest["server_cpu_us_per_event"] = cpu / max(1, ingest["accepted"]) * 1e6
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    raw = _raw_producer(settings, sample_events(events, seed=22)) if ingest_on else None
    delete_redis_prefix(settings, settings.kafka.topic_prefix)
    delete_topics(settings, [s.name for s in specs])
    out: dict[str, Any] = {
        "settings": {
            "rate": rate,
            "duration_s": duration,
            "warmup_s": warmup,
            "connections": connections,
            "ref_seconds": ref_seconds,
            "profiles": profiles,
            "server_processes": processes,
            "server_loop": loop,
            "server_root": server_root or "this checkout",
            "events": events,
            "batch": batch,
            "concurrency": concurrency,
            "kafka_partitions": settings.kafka.partitions,
            "producer_linger_ms": settings.kafka.producer_linger_ms,
        },
        "load_average_before": round(load_before[0], 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        **figures,
        "loadgen_max_rate_healthz_per_s": figures["healthz_max"]["rate_per_s"],
    }
    if lookups_on:
        out.update(
            profile_p99_target_ms=5.0,
            profile_p99_met=figures["profile"].get("p99_ms", float("inf")) <= 5.0,
        )
    if ingest_on and raw is not None:
        ingest = figures["ingest"]
        out.update(
            ingest_target_per_s=20_000,
            ingest_met=ingest["events_per_s"] >= 20_000,
            raw_producer_events_per_s=raw,
            ingest_ratio_to_raw=ingest["events_per_s"] / raw,
        )
    return out
