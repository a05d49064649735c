"""Profile and recommendation lookups: Redis first, the owning worker's table as fallback.

Redis layout (written by the profiles mirror and the recommender):

- ``{prefix}:profile:{customer_id}``: a hash, one field per top-level profile attribute, each
  value JSON-encoded, plus ``version`` and ``updated_at``;
- ``{prefix}:reco:{customer_id}``: a string holding JSON ``{"recommendation_id", "items":
  [{"product_id", "score", "reason"}], "policy", "model_version", "served_at"}``.

A profile missing from Redis (expired, not mirrored yet, Redis down) is asked of a worker at
``GET {api.worker_url}/v1/profiles/{customer_id}``; Faust routes that to the worker owning the
key's partition. Serving only reads: no model or profile is updated here.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import quote

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import RedisError

from cxstream.api.metrics import ApiMetrics
from cxstream.api.profile_body import profile_body
from cxstream.errors import ServiceError
from cxstream.redis_connection import async_redis
from cxstream.settings import Settings

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
#: consent whose refusal turns recommendations off (profile attribute ``consents``)
PERSONALISATION = "personalisation"


def profile_key(settings: Settings, customer_id: str) -> str:
    return f"{settings.kafka.topic_prefix}:profile:{customer_id}"


def reco_key(settings: Settings, customer_id: str) -> str:
    return f"{settings.kafka.topic_prefix}:reco:{customer_id}"


def redis_client(settings: Settings) -> Redis:
    """An asyncio Redis client over a bounded connection pool (cxstream.redis_connection).

    ``socket_timeout=None`` (redis-py 8 defaults to 5 s): with one, redis-py wraps every send
    in ``asyncio.wait_for`` (a task per command); each lookup runs under one ``asyncio.timeout``
    instead, and a cancelled command disconnects its connection (redis-py), so no late answer
    is read by the next command.
    """
    return async_redis(
        settings,
        timeout=None,
        connect_timeout=settings.api.request_timeout_seconds,
        max_connections=settings.api.redis_max_connections,
    )


class Lookups:
    """Answers the GET routes; ``http`` is the session for the worker fallback."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        http: aiohttp.ClientSession | None,
        metrics: ApiMetrics,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.http = http
        self.metrics = metrics
        self.worker_url = (settings.api.worker_url or "").rstrip("/") or None
        self._profile_prefix = profile_key(settings, "")
        self._redis_profile_errors = metrics.redis_errors.labels("profile")
        self._timeout = settings.api.request_timeout_seconds

    async def profile(self, customer_id: str) -> tuple[bytes | None, str]:
        """The profile as a JSON body and where it came from: ``redis``, ``worker`` or ``none``.

        Raises ``ServiceError`` when Redis has no answer and the worker cannot be asked.
        """
        redis_error: Exception | None = None
        profile: bytes | None = None
        try:
            async with asyncio.timeout(self._timeout):
                # execute_command: hgetall() only wraps it; bytes, as the client does not
                # decode responses (redis_client)
                answer = await self.redis.execute_command(
                    "HGETALL", self._profile_prefix + customer_id
                )
            raw = cast(Mapping[bytes, bytes], answer)
        except (RedisError, OSError, TimeoutError) as exc:
            self._redis_profile_errors.inc()
            redis_error = exc
        else:
            try:
                profile = profile_body(raw, int(time.time() * 1000))
            except ValueError as exc:
                raise ServiceError(
                    f"profile {customer_id}: the Redis hash is not a mirrored profile: {exc}"
                ) from exc
        if profile is not None:
            return profile, "redis"
        if self.worker_url is None or self.http is None:
            if redis_error is not None:
                raise ServiceError(
                    f"profile {customer_id}: Redis failed: {redis_error}"
                ) from redis_error
            return None, "none"
        try:
            found = await self._worker_profile(customer_id)
        except ServiceError as exc:
            self.metrics.worker_errors.inc()
            cause = f"Redis failed ({redis_error}) and " if redis_error else "not in Redis and "
            raise ServiceError(f"profile {customer_id}: {cause}{exc}") from exc
        if found is None:
            return None, "none"
        return _dumps(found).encode(), "worker"

    async def _worker_profile(self, customer_id: str) -> dict[str, Any] | None:
        assert self.http is not None
        assert self.worker_url is not None
        url = f"{self.worker_url}/v1/profiles/{quote(customer_id, safe='')}"
        timeout = aiohttp.ClientTimeout(total=self.settings.api.request_timeout_seconds)
        try:
            async with self.http.get(url, timeout=timeout) as response:
                if response.status == 404:
                    return None
                if response.status != 200:
                    text = (await response.text())[:200]
                    raise ServiceError(f"worker {url} answered {response.status}: {text}")
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            raise ServiceError(f"worker {url} failed: {exc!r}") from exc
        if not isinstance(body, dict):
            raise ServiceError(f"worker {url} answered a {type(body).__name__}, not a profile")
        # a worker may wrap the profile ({"profile": {...}}) or return it bare
        inner = body.get("profile")
        return inner if isinstance(inner, dict) else body

    async def recommendations(self, customer_id: str, k: int) -> dict[str, Any] | None:
        """Top ``k`` items with their reasons; empty with reason ``opted_out`` when the
        customer refused personalisation; ``None`` when there is no recommendation."""
        try:
            async with asyncio.timeout(self._timeout), self.redis.pipeline(False) as pipe:
                pipe.get(reco_key(self.settings, customer_id))
                pipe.hget(profile_key(self.settings, customer_id), "consents")
                raw_reco, raw_consents = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self.metrics.redis_errors.labels("recommendations").inc()
            raise ServiceError(f"recommendations {customer_id}: Redis failed: {exc}") from exc
        if _opted_out(raw_consents):
            return {"customer_id": customer_id, "items": [], "reason": "opted_out"}
        if raw_reco is None:
            return None
        try:
            reco = json.loads(raw_reco)
            items = sorted(reco["items"], key=lambda item: -float(item["score"]))[:k]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ServiceError(
                f"recommendations {customer_id}: stored value is not a recommendation: {exc!r}"
            ) from exc
        return {
            "customer_id": customer_id,
            "recommendation_id": reco.get("recommendation_id"),
            "policy": reco.get("policy"),
            "model_version": reco.get("model_version"),
            "served_at": reco.get("served_at"),
            "items": [
                {"product_id": i["product_id"], "score": i["score"], "reason": i.get("reason")}
                for i in items
            ],
        }


def _opted_out(raw_consents: bytes | str | None) -> bool:
    if raw_consents is None:
        return False
    try:
        consents = json.loads(raw_consents)
    except json.JSONDecodeError:
        return False
    return isinstance(consents, dict) and consents.get(PERSONALISATION) is False
