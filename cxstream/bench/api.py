"""``cxstream bench api``: the HTTP API as deployed (``cxstream api`` in its own process).

Figures:

- ``profile``: ``GET /v1/customers/{id}/profile`` under an open-loop fixed-rate load of
  ``rate`` (1000) requests/s for ``duration`` (10) s from this process (asyncio + aiohttp, up to
  ``connections`` (32) keep-alive connections), over ``profiles`` (10000) customers preloaded in
  Redis in the mirror layout (:func:`processors.profiles.mirror.encode_fields` of a real
  :func:`processors.profiles.view.profile_view`). Latency runs from each request's *scheduled*
  send time to its full response, so a stalled server cannot hide queued requests (no
  coordinated omission); the first ``warmup`` (1) s are not counted. Target p99 <= 5 ms.
- ``ingest``: ``POST /v1/events`` of ``events`` (200000) ``channel_interaction`` events in
  batches of ``batch`` (1000), ``concurrency`` (4) requests in flight; events/s from the first
  request to the last answer (every answer means Kafka acknowledged its events). Target >= 20k.
  Reference ``raw_producer``: the same records through :class:`EventProducer` (validate +
  encode + produce + flush) in this process, in the same run.

The server's topics and Redis keys use a fresh prefix, removed afterwards. Load targets
127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from typing import Any

from cxstream.bench.produce import sample_events
from cxstream.errors import ServiceError
from cxstream.settings import Settings
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
        CX_REDIS__URL=settings.redis.url,
        CX_API__HOST=HOST,
        CX_API__PORT=str(port),
        CX_API__KEYS=json.dumps({"bench": KEY}),
        # the load is the point: the limiter must not shape it
        CX_API__RATE_LIMIT_PER_SECOND="1000000",
        CX_API__RATE_LIMIT_BURST="1000000",
        CX_API__WORKER_URL="",
        CX_LOG_LEVEL="WARNING",
    )
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
    from redis.asyncio import Redis

    from processors.profiles.mirror import encode_fields, profile_key
    from processors.profiles.view import profile_view

    ids = [f"bench-{i:06d}" for i in range(count)]
    redis = Redis.from_url(settings.redis.url)
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


async def _cleanup_redis(settings: Settings) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(settings.redis.url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{settings.kafka.topic_prefix}:*")]
        for start in range(0, len(keys), 1000):
            await redis.delete(*keys[start : start + 1000])
    finally:
        await redis.aclose()


async def _profile_load(
    url: str, ids: list[str], rate: float, duration: float, warmup: float, connections: int
) -> dict[str, Any]:
    import aiohttp

    headers = {"X-API-Key": KEY}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        loop = asyncio.get_running_loop()

        async def one(index: int, scheduled: float) -> None:
            customer_id = ids[index % len(ids)]
            async with session.get(
                f"{url}/v1/customers/{customer_id}/profile", headers=headers
            ) as r:
                await r.read()
                statuses[r.status] = statuses.get(r.status, 0) + 1
            if scheduled - start >= warmup:
                latencies.append(loop.time() - scheduled)

        total = int(rate * (duration + warmup))
        tasks = []
        start = loop.time()
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(i, scheduled)))
        await asyncio.gather(*tasks)
        elapsed = loop.time() - start
    return {
        "requests": total,
        "achieved_rate_per_s": total / elapsed,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        **_percentiles(latencies),
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


def run(settings: Settings, **options: Any) -> dict[str, Any]:
    rate = float(options.get("rate", 1000))
    duration = float(options.get("duration", 10))
    warmup = float(options.get("warmup", 1))
    connections = int(options.get("connections", 32))
    profiles = int(options.get("profiles", 10_000))
    events = int(options.get("events", 200_000))
    batch = int(options.get("batch", 1000))
    concurrency = int(options.get("concurrency", 4))

    run_id = uuid.uuid4().hex[:8]
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"topic_prefix": f"bench-api-{run_id}"})}
    )
    specs = [s for s in platform_topics(settings) if s.name == settings.topic(EVENT)]
    ensure_topics(settings, specs)
    port = _free_port()
    url = f"http://{HOST}:{port}"
    records = sample_events(events, seed=21)
    items = [{"type": EVENT, "event": r} for r in records]
    bodies = [
        json.dumps({"events": items[i : i + batch]}).encode() for i in range(0, len(items), batch)
    ]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from cxstream.api.cli import api; api()"],
        env=_server_env(settings, port),
    )
    try:
        ids = asyncio.run(_preload(settings, profiles))
        _wait_ready(url, proc)
        profile = asyncio.run(_profile_load(url, ids, rate, duration, warmup, connections))
        ingest = asyncio.run(_ingest_load(url, bodies, concurrency))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    raw = _raw_producer(settings, sample_events(events, seed=22))
    asyncio.run(_cleanup_redis(settings))
    delete_topics(settings, [s.name for s in specs])
    return {
        "settings": {
            "rate": rate,
            "duration_s": duration,
            "warmup_s": warmup,
            "connections": connections,
            "profiles": profiles,
            "events": events,
            "batch": batch,
            "concurrency": concurrency,
            "kafka_partitions": settings.kafka.partitions,
            "producer_linger_ms": settings.kafka.producer_linger_ms,
        },
        "profile": profile,
        "profile_p99_target_ms": 5.0,
        "profile_p99_met": profile.get("p99_ms", float("inf")) <= 5.0,
        "ingest": ingest,
        "ingest_target_per_s": 20_000,
        "ingest_met": ingest["events_per_s"] >= 20_000,
        "raw_producer_events_per_s": raw,
        "ingest_ratio_to_raw": ingest["events_per_s"] / raw,
    }
