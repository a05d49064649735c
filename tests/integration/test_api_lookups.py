"""GET profile / recommendations through a real HTTP server and real Redis (mirror layout written
with the profiles processor's own encoder), readiness and metrics. The fallback to a real
profiles worker is in ``test_api_worker_fallback.py``."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from redis.asyncio import Redis

from cxstream.api import create_api
from cxstream.settings import Settings
from processors.profiles.mirror import encode_fields
from tests.support.services import LocalStack, free_port

pytestmark = pytest.mark.integration

KEY = "key-of-app"
AUTH = {"X-API-Key": KEY}


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


def view(customer_id: str, **attributes: Any) -> dict[str, Any]:
    profile = {
        "customer_id": customer_id,
        "channels": {"app": {"count": 3, "last_at": 1_796_000_000_000}},
        "preferred_channel": "app",
        "open_feedback": 0,
        "oldest_open_feedback_at": None,
        "consents": {"personalisation": True},
        "segment": "digital",
    }
    profile.update(attributes)
    return profile


@pytest.fixture
async def world(local_stack: LocalStack) -> AsyncIterator[tuple[Settings, Redis]]:
    """An API with its own key prefix in Redis and no worker fallback."""
    base = local_stack.settings
    settings = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(
                update={"topic_prefix": f"test-lk-{uuid.uuid4().hex[:8]}"}
            ),
            "api": base.api.model_copy(
                update={"keys": {"app": SecretStr(KEY)}, "worker_url": None}
            ),
        }
    )
    redis = Redis.from_url(settings.redis.url)
    try:
        yield settings, redis
    finally:
        prefix = settings.kafka.topic_prefix
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


async def test_profile_from_redis_404_401_and_metrics(world: tuple[Settings, Redis]) -> None:
    settings, redis = world
    prefix = settings.kafka.topic_prefix
    stored = view("c-redis", open_feedback=1, oldest_open_feedback_at=1_796_000_000_000)
    fields = encode_fields(stored, 7, 1_796_000_001_000)
    await redis.hset(f"{prefix}:profile:c-redis", mapping=fields)
    runner, url = await _serve(create_api(settings))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/v1/customers/c-redis/profile", headers=AUTH) as r:
                assert r.status == 200
                assert r.headers["X-Profile-Source"] == "redis"
                assert r.content_type == "application/json"
                body = await r.json()
            assert {k: body[k] for k in stored} == stored
            assert (body["version"], body["updated_at"]) == (7, 1_796_000_001_000)
            assert body["oldest_open_feedback_age_seconds"] > 0  # added at read time
            async with session.get(f"{url}/v1/customers/nobody/profile", headers=AUTH) as r:
                assert r.status == 404
                assert "nobody" in (await r.json())["error"]
            async with session.get(f"{url}/v1/customers/c-redis/profile") as r:
                assert r.status == 401

            async with session.get(f"{url}/metrics") as r:
                families = {f.name: f for f in text_string_to_metric_families(await r.text())}
        sources = {
            s.labels["source"]: s.value
            for s in families["cxstream_api_profile_lookups"].samples
            if s.name.endswith("_total")
        }
        assert sources == {"redis": 1, "none": 1}
        requests = {
            (s.labels["route"], s.labels["status"]): s.value
            for s in families["cxstream_api_requests"].samples
            if s.name.endswith("_total")
        }
        route = "/v1/customers/{id}/profile"
        assert requests[(route, "200")] == 1
        assert requests[(route, "404")] == 1
        assert requests[(route, "401")] == 1
        latency_count = [
            s.value
            for s in families["cxstream_api_request_seconds"].samples
            if s.name.endswith("_count") and s.labels["route"] == route
        ]
        assert latency_count == [3]
    finally:
        await runner.cleanup()


async def test_redis_down_is_503_and_readiness_names_redis(
    world: tuple[Settings, Redis],
) -> None:
    settings, _ = world
    # a port nothing listens on: a real refused connection
    dead = settings.model_copy(
        update={
            "redis": settings.redis.model_copy(update={"url": f"redis://127.0.0.1:{free_port()}/0"})
        }
    )
    runner, url = await _serve(create_api(dead))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/v1/customers/c-1/profile", headers=AUTH) as r:
                assert r.status == 503
                assert "Redis failed" in (await r.json())["error"]
            async with session.get(f"{url}/v1/customers/c1/recommendations", headers=AUTH) as r:
                assert r.status == 503
                assert "Redis failed" in (await r.json())["error"]
            async with session.get(f"{url}/readyz") as r:
                assert r.status == 503
                body = await r.json()
            assert set(body["not_ready"]) == {"redis"}
            async with session.get(f"{url}/healthz") as r:
                assert r.status == 200
            async with session.get(f"{url}/metrics") as r:
                families = {f.name: f for f in text_string_to_metric_families(await r.text())}
        errors = {
            s.labels["lookup"]: s.value
            for s in families["cxstream_api_redis_errors"].samples
            if s.name.endswith("_total")
        }
        assert errors == {"profile": 1, "recommendations": 1}
    finally:
        await runner.cleanup()


async def test_worker_down_and_redis_miss_is_503(
    world: tuple[Settings, Redis],
) -> None:
    settings, _ = world
    nowhere = settings.model_copy(
        update={
            "api": settings.api.model_copy(update={"worker_url": f"http://127.0.0.1:{free_port()}"})
        }
    )
    runner, url = await _serve(create_api(nowhere))
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{url}/v1/customers/c-x/profile", headers=AUTH) as r,
        ):
            assert r.status == 503
            message = (await r.json())["error"]
        assert "not in Redis" in message
        assert "/v1/profiles/c-x" in message
    finally:
        await runner.cleanup()


async def test_recommendations_top_k_with_reasons_opt_out_and_missing(
    world: tuple[Settings, Redis],
) -> None:
    settings, redis = world
    prefix = settings.kafka.topic_prefix
    items = [
        {"product_id": "p-card", "score": 0.4, "reason": "similar_customers"},
        {"product_id": "p-loan", "score": 0.9, "reason": "recent_transactions"},
        {"product_id": "p-save", "score": 0.7, "reason": "life_event"},
    ]
    reco = {
        "recommendation_id": "r-1",
        "items": items,
        "policy": "thompson",
        "model_version": "m-3",
        "served_at": 1_796_000_000_000,
    }
    for customer in ("c-yes", "c-no"):
        await redis.set(f"{prefix}:reco:{customer}", json.dumps(reco))
    await redis.hset(f"{prefix}:profile:c-yes", mapping=encode_fields(view("c-yes"), 1, 1))
    opted_out = view("c-no", consents={"personalisation": False, "marketing": True})
    await redis.hset(f"{prefix}:profile:c-no", mapping=encode_fields(opted_out, 1, 1))
    before = await redis.get(f"{prefix}:reco:c-yes")

    runner, url = await _serve(create_api(settings))
    try:
        async with aiohttp.ClientSession() as session:
            path = f"{url}/v1/customers/c-yes/recommendations"
            async with session.get(path, params={"k": "2"}, headers=AUTH) as r:
                assert r.status == 200
                body = await r.json()
            assert [(i["product_id"], i["reason"]) for i in body["items"]] == [
                ("p-loan", "recent_transactions"),
                ("p-save", "life_event"),
            ]
            assert (body["recommendation_id"], body["policy"]) == ("r-1", "thompson")
            async with session.get(path, headers=AUTH) as r:  # default k=5: all three
                assert len((await r.json())["items"]) == 3
            async with session.get(path, params={"k": "0"}, headers=AUTH) as r:
                assert r.status == 400
            async with session.get(f"{url}/v1/customers/c-no/recommendations", headers=AUTH) as r:
                assert r.status == 200
                assert await r.json() == {"customer_id": "c-no", "items": [], "reason": "opted_out"}
            async with session.get(f"{url}/v1/customers/c-none/recommendations", headers=AUTH) as r:
                assert r.status == 404
        # serving never writes
        assert await redis.get(f"{prefix}:reco:c-yes") == before
    finally:
        await runner.cleanup()
