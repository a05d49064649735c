"""GET profile through a real ``cxstream worker -p profiles`` fed by real events: Redis first, the
worker's table (Faust web view ``/v1/profiles/{id}``) when Redis misses or is down, 404 via the
worker for an unknown customer. One worker for the module (its start is most of the time)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from redis.asyncio import Redis

from cxstream.api import create_api
from cxstream.settings import Settings
from cxstream.simulate.config import SimulationConfig
from cxstream.simulate.traffic import generate
from processors.profiles.mirror import decode_fields
from streams.codec import build_codec
from streams.producer import EventProducer
from streams.topics import delete_topics, ensure_topics, platform_topics
from tests.integration.test_kafka_roundtrip import CXSTREAM, worker_env
from tests.support.services import LocalStack, free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
KEY = "key-of-app"
AUTH = {"X-API-Key": KEY}
#: attributes that depend on when they are read
VOLATILE = ("updated_at", "oldest_open_feedback_age_seconds")


@dataclass
class World:
    settings: Settings  # the API's: worker_url points at the worker
    customers: list[str]
    hashes: dict[str, dict[str, Any]]  # customer -> profile as mirrored, once quiet


def _hashes(settings: Settings, customers: list[str]) -> dict[str, dict[str, Any]]:
    async def read() -> dict[str, dict[str, Any]]:
        redis = Redis.from_url(settings.redis.url)
        try:
            found = {}
            for cid in customers:
                profile = decode_fields(
                    await redis.hgetall(f"{settings.kafka.topic_prefix}:profile:{cid}")
                )
                if profile is not None:
                    found[cid] = profile
            return found
        finally:
            await redis.aclose()

    return asyncio.run(read())


def _wait_quiet(settings: Settings, customers: list[str], log: Path) -> dict[str, dict[str, Any]]:
    """The mirrored profiles once every customer has one and no version moved for 1 s."""
    deadline = time.monotonic() + 60
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        hashes = _hashes(settings, customers)
        versions = {cid: h["version"] for cid, h in hashes.items()}
        if len(hashes) == len(customers) and versions == last:
            return hashes
        last = versions
        time.sleep(1.0)
    raise AssertionError(
        f"worker mirrored {len(last)} of {len(customers)} profiles in 60 s:\n"
        + log.read_text(errors="replace")[-2000:]
    )


@pytest.fixture(scope="module")
def world(local_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("api-fallback")
    run = uuid.uuid4().hex[:10]
    base = local_stack.settings
    settings = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"topic_prefix": f"test-apifb-{run}"}),
            "worker": base.worker.model_copy(
                update={
                    "app_id": f"test-apifb-app-{run}",
                    "web_port": free_port(),
                    "data_dir": tmp / "worker",
                }
            ),
        }
    )
    specs = platform_topics(settings)
    ensure_topics(settings, specs)
    config = SimulationConfig(
        start_ms=1_780_000_000_000, duration_ms=None, max_events=1500, customers=12
    )
    events = [(e.name, e.record) for e in generate(config)]
    # every registered customer has a profile
    customers = sorted(r["customer_id"] for name, r in events if name == "customer_registered")
    assert len(customers) >= 5, "the simulation registered too few customers for the tests"
    env = worker_env(settings, PYTHONPATH=str(REPO), CX_REDIS__URL=settings.redis.url)
    log = tmp / "worker.log"
    with log.open("ab") as out:
        worker = subprocess.Popen(
            [CXSTREAM, "worker", "-p", "profiles", "--no-ensure-topics"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        with EventProducer(settings, build_codec(settings)) as producer:
            for name, record in events:
                producer.produce(name, record)
            producer.flush(30)
        hashes = _wait_quiet(settings, customers, log)
        api = settings.api.model_copy(
            update={
                "keys": {"app": SecretStr(KEY)},
                "worker_url": f"http://127.0.0.1:{settings.worker.web_port}",
            }
        )
        yield World(settings.model_copy(update={"api": api}), customers, hashes)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        asyncio.run(_drop_keys(settings))
        delete_topics(settings, [s.name for s in specs])


async def _drop_keys(settings: Settings) -> None:
    redis = Redis.from_url(settings.redis.url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{settings.kafka.topic_prefix}:*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


def _stable(profile: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in profile.items() if k not in VOLATILE}


async def _metrics(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(f"{url}/metrics") as r:
        return {f.name: f for f in text_string_to_metric_families(await r.text())}


async def test_redis_hit_then_miss_falls_back_to_the_worker_then_404(world: World) -> None:
    settings = world.settings
    in_redis, expired = world.customers[0], world.customers[1]
    # the mirror's copy of one customer is gone (TTL, Redis lost it): only the table has it
    redis = Redis.from_url(settings.redis.url)
    await redis.delete(f"{settings.kafka.topic_prefix}:profile:{expired}")
    await redis.aclose()
    runner, url = await _serve(create_api(settings))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/v1/customers/{in_redis}/profile", headers=AUTH) as r:
                assert r.status == 200
                assert r.headers["X-Profile-Source"] == "redis"
                body = await r.json()
            assert _stable(body) == _stable(world.hashes[in_redis])
            assert "oldest_open_feedback_age_seconds" in body

            async with session.get(f"{url}/v1/customers/{expired}/profile", headers=AUTH) as r:
                assert r.status == 200
                assert r.headers["X-Profile-Source"] == "worker"
                body = await r.json()
            # the table's answer is the profile Redis held
            assert _stable(body) == _stable(world.hashes[expired])

            async with session.get(
                f"{url}/v1/customers/nobody-{uuid.uuid4().hex}/profile", headers=AUTH
            ) as r:
                assert r.status == 404
            families = await _metrics(session, url)
        sources = {
            s.labels["source"]: s.value
            for s in families["cxstream_api_profile_lookups"].samples
            if s.name.endswith("_total")
        }
        assert sources == {"redis": 1, "worker": 1, "none": 1}
    finally:
        await runner.cleanup()


async def test_redis_down_every_profile_comes_from_the_worker(world: World) -> None:
    dead = world.settings.model_copy(
        update={
            "redis": world.settings.redis.model_copy(
                update={"url": f"redis://127.0.0.1:{free_port()}/0"}
            )
        }
    )
    runner, url = await _serve(create_api(dead))
    try:
        async with aiohttp.ClientSession() as session:
            for cid in world.customers[2:5]:
                async with session.get(f"{url}/v1/customers/{cid}/profile", headers=AUTH) as r:
                    assert r.status == 200
                    assert r.headers["X-Profile-Source"] == "worker"
                    assert _stable(await r.json()) == _stable(world.hashes[cid])
            families = await _metrics(session, url)
        errors = {
            s.labels["lookup"]: s.value
            for s in families["cxstream_api_redis_errors"].samples
            if s.name.endswith("_total")
        }
        assert errors == {"profile": 3}
    finally:
        await runner.cleanup()
