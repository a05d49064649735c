"""``create_api(settings)``: the aiohttp application of the HTTP API.

Routes: ``POST /v1/events`` (:mod:`cxstream.api.ingest`), ``GET /v1/customers/{id}/profile``
and ``GET /v1/customers/{id}/recommendations?k=5`` (:mod:`cxstream.api.lookups`), ``GET
/healthz``, ``GET /readyz``, ``GET /metrics``, ``GET /openapi.json``. Every ``/v1/`` route needs
a frontend's API key (401) and is rate limited per key (429 with ``Retry-After``). Clients
(Kafka producer, Redis pool, HTTP session for the worker fallback) are made when the app
starts and closed when it stops; nothing is connected at construction.

A separate service rather than Faust web views: ingest needs no table, the lookups are served
from Redis and only fall back to a worker, and keeping the HTTP load off the workers' event
loops keeps their stream throughput.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis

from cxstream.api.auth import ApiKeys, presented_key
from cxstream.api.ingest import BadRequestError, Ingestor, parse_events, summary_by_type
from cxstream.api.limits import BodyTooLargeError, RateLimiter, read_body, retry_after_header
from cxstream.api.lookups import Lookups, redis_client
from cxstream.api.metrics import ApiMetrics
from cxstream.api.openapi import build_openapi
from cxstream.errors import ServiceError
from cxstream.settings import Settings
from streams.codec import AvroCodec, build_codec

log = logging.getLogger(__name__)

MAX_K = 100


@dataclass
class ApiState:
    """What the handlers use, made in :func:`_clients` when the app starts."""

    settings: Settings
    metrics: ApiMetrics
    keys: ApiKeys
    limiter: RateLimiter
    codec: AvroCodec
    openapi: bytes
    ingestor: Ingestor | None = None
    lookups: Lookups | None = None
    redis: Redis | None = None


STATE = web.AppKey("cxstream_api", ApiState)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_api(
    settings: Settings,
    *,
    codec: AvroCodec | None = None,
    metrics: ApiMetrics | None = None,
) -> web.Application:
    """The API application for ``settings`` (serve it with ``aiohttp.web.run_app`` or
    ``cxstream api``)."""
    api = settings.api
    codec = codec or build_codec(settings)
    state = ApiState(
        settings=settings,
        metrics=metrics or ApiMetrics(),
        keys=ApiKeys(api.keys),
        limiter=RateLimiter(api.rate_limit_per_second, api.rate_limit_burst),
        codec=codec,
        openapi=json.dumps(build_openapi(settings, codec.registry), indent=1).encode(),
    )
    # aiohttp's own limit is a backstop; read_body answers 413 with our error body first
    app = web.Application(middlewares=[_middleware], client_max_size=api.max_request_bytes + 1)
    app[STATE] = state
    app.cleanup_ctx.append(_clients)
    # every /v1/ route needs a frontend's key and counts against its rate
    app.router.add_post("/v1/events", _keyed(post_events))
    app.router.add_get("/v1/customers/{id}/profile", _keyed(get_profile))
    app.router.add_get("/v1/customers/{id}/recommendations", _keyed(get_recommendations))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/openapi.json", openapi_view)
    return app


async def _clients(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    settings = state.settings
    ingestor = Ingestor(settings, state.codec)
    ingestor.start()
    redis = redis_client(settings)
    http = aiohttp.ClientSession()
    state.ingestor, state.redis = ingestor, redis
    state.lookups = Lookups(settings, redis, http, state.metrics)
    try:
        yield
    finally:
        await http.close()
        await redis.aclose()
        # flushing waits for librdkafka: off the loop
        await asyncio.to_thread(ingestor.close)


def error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    started = time.perf_counter()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    response: web.StreamResponse
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # 404 of unknown paths, 405, aiohttp's own 413
        response = error(exc.status, exc.reason)
    except Exception:
        log.exception("%s %s failed", request.method, route)
        response = error(500, f"internal error in {request.method} {route}")
    state.metrics.request_done(
        route, request.method, response.status, time.perf_counter() - started
    )
    return response


KeyedHandler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


def _keyed(handler: KeyedHandler) -> Handler:
    """``handler(request, frontend)`` behind the API key check (401) and rate limit (429)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        frontend = state.keys.frontend(presented_key(request.headers))
        if frontend is None:
            return error(
                401,
                "missing or unknown API key: send it as X-API-Key or Authorization: Bearer",
                **{"WWW-Authenticate": "Bearer"},
            )
        wait = state.limiter.acquire(frontend)
        if wait > 0:
            return error(
                429,
                f"rate limit of {state.settings.api.rate_limit_per_second:g} requests/s for "
                f"frontend {frontend!r} exceeded; retry in {wait:.2f} s",
                **{"Retry-After": retry_after_header(wait)},
            )
        return await handler(request, frontend)

    return guarded


async def post_events(request: web.Request, frontend: str) -> web.StreamResponse:
    state = request.app[STATE]
    api = state.settings.api
    if request.content_type != "application/json":
        return error(415, f"content type must be application/json, got {request.content_type!r}")
    try:
        body = await read_body(request, api.max_request_bytes)
        items = parse_events(body, api.max_events_per_request)
    except BodyTooLargeError as exc:
        return error(413, str(exc))
    except BadRequestError as exc:
        return error(exc.status, exc.message)
    assert state.ingestor is not None
    result = await state.ingestor.ingest(frontend, items)
    for (event_type, outcome, reason), n in summary_by_type(result).items():
        state.metrics.events.labels(event_type, outcome, reason).inc(n)
    status = 200 if result.durable else 503
    return web.json_response(result.as_json(), status=status)


async def get_profile(request: web.Request, frontend: str) -> web.StreamResponse:
    state = request.app[STATE]
    assert state.lookups is not None
    customer_id = request.match_info["id"]
    try:
        body, source = await state.lookups.profile(customer_id)
    except ServiceError as exc:
        state.metrics.profile_from("error")
        return error(503, str(exc))
    state.metrics.profile_from(source)
    if body is None:
        return error(404, f"no profile for customer {customer_id!r}")
    # the body is built from the stored JSON values (cxstream.api.profile_body): no re-encoding
    return web.Response(
        body=body, content_type="application/json", charset="utf-8", headers=_SOURCE[source]
    )


_SOURCE = {source: {"X-Profile-Source": source} for source in ("redis", "worker")}


async def get_recommendations(request: web.Request, frontend: str) -> web.StreamResponse:
    state = request.app[STATE]
    assert state.lookups is not None
    customer_id = request.match_info["id"]
    raw_k = request.query.get("k", "5")
    try:
        k = int(raw_k)
    except ValueError:
        k = 0
    if not 1 <= k <= MAX_K:
        return error(400, f"k must be an integer in 1..{MAX_K}, got {raw_k!r}")
    try:
        found = await state.lookups.recommendations(customer_id, k)
    except ServiceError as exc:
        return error(503, str(exc))
    if found is None:
        return error(404, f"no recommendation for customer {customer_id!r}")
    return web.json_response(found)


async def healthz(request: web.Request) -> web.StreamResponse:
    # the pid tells apart the processes sharing the port (api.processes)
    return web.json_response({"status": "alive", "pid": os.getpid()})


async def readyz(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    checks = await asyncio.gather(_kafka_ready(state), _redis_ready(state))
    problems = {name: problem for name, problem in checks if problem}
    if problems:
        detail = "; ".join(f"{name}: {problem}" for name, problem in problems.items())
        return web.json_response(
            {"status": "not ready", "not_ready": problems, "error": f"not ready: {detail}"},
            status=503,
        )
    return web.json_response({"status": "ready"})


#: readiness probes answer quickly; a slower service counts as not ready
PROBE_SECONDS = 2.0


async def _kafka_ready(state: ApiState) -> tuple[str, str | None]:
    if state.ingestor is None:
        return "kafka", "producer not started"
    try:
        await asyncio.to_thread(state.ingestor.producer_ready, PROBE_SECONDS)
    except ServiceError as exc:
        return "kafka", str(exc)
    return "kafka", None


async def _redis_ready(state: ApiState) -> tuple[str, str | None]:
    if state.redis is None:
        return "redis", "client not started"
    try:
        await asyncio.wait_for(state.redis.ping(), PROBE_SECONDS)
    except Exception as exc:  # any failure means not ready, and says which
        return "redis", f"ping to {state.settings.redis.url} failed: {exc!r}"
    return "redis", None


async def metrics_view(request: web.Request) -> web.StreamResponse:
    body = generate_latest(request.app[STATE].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi_view(request: web.Request) -> web.StreamResponse:
    return web.Response(body=request.app[STATE].openapi, content_type="application/json")
