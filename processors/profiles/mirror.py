"""The Redis mirror of profiles, and the reader the HTTP API uses.

Layout: one hash per customer at ``{topic_prefix}:profile:{customer_id}``; one field per
top-level attribute of :func:`processors.profiles.view.profile_view`, each value JSON-encoded,
plus ``version`` (events applied to the profile) and ``updated_at`` (ms, when mirrored). Every
field is written on each change, so a hash never holds stale fields; the TTL
(``settings.redis.profile_ttl_seconds``, 0 = none) is renewed with every write.

Redis is a view: the profiles table (changelog-backed) is the truth. If Redis fails, the
stream goes on: changed customer ids are kept in a bounded dirty set (``settings.profiles.
mirror_max_dirty``; beyond it only a "rebuild everything" flag is kept) and a background task
probes Redis every ``mirror_retry_seconds``; once it answers, the dirty profiles (or, after an
overflow, every profile this worker holds) are re-read from the table and written. The same
:meth:`RedisMirror.rebuild` rebuilds Redis from the table after Redis lost its data: run a
worker (its table recovers from the changelog) and call it, or just let the stream re-mirror
customers as they change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from cxstream.settings import Settings

log = logging.getLogger(__name__)

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
#: (customer id, view, version) of one profile to write
Entry = tuple[str, dict[str, Any], int]
#: customer id -> (view, version) from the table, or None when unknown
Loader = Callable[[str], tuple[dict[str, Any], int] | None]


def profile_key(settings: Settings, customer_id: str) -> str:
    return f"{settings.kafka.topic_prefix}:profile:{customer_id}"


def encode_fields(view: Mapping[str, Any], version: int, updated_at: int) -> dict[str, str]:
    """The hash fields of a view: JSON per attribute, plus version and updated_at."""
    fields: dict[str, str] = {}
    for name, value in view.items():
        kind = type(value)
        if kind is int:
            fields[name] = str(value)
        elif value is None:
            fields[name] = "null"
        else:
            fields[name] = _dumps(value)
    fields["version"] = str(version)
    fields["updated_at"] = str(updated_at)
    return fields


def decode_fields(raw: Mapping[Any, Any]) -> dict[str, Any] | None:
    """A profile from its hash (JSON values); ``None`` for a missing (empty) hash."""
    if not raw:
        return None
    profile: dict[str, Any] = {}
    for name, value in raw.items():
        key = name.decode() if isinstance(name, bytes) else name
        profile[key] = json.loads(value)
    return profile


async def read_profile(
    redis_client: Redis, settings: Settings, customer_id: str
) -> dict[str, Any] | None:
    """The mirrored profile of ``customer_id`` (``None`` if Redis has none).

    Adds ``oldest_open_feedback_age_seconds`` (it depends on the present, so it is not stored).
    """
    from processors.profiles.view import with_ages

    profile = decode_fields(await redis_client.hgetall(profile_key(settings, customer_id)))
    return None if profile is None else with_ages(profile)


def redis_for(settings: Settings) -> Redis:
    """An asyncio client from ``settings.redis`` with short timeouts (a slow Redis is down)."""
    redis = settings.redis
    timeout = settings.profiles.mirror_timeout_seconds
    kwargs: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if redis.username:
        kwargs["username"] = redis.username
    if redis.password is not None:
        kwargs["password"] = redis.password.get_secret_value()
    if redis.ssl_cafile is not None:
        kwargs["ssl_ca_certs"] = str(redis.ssl_cafile)
    return Redis.from_url(redis.url, **kwargs)


class RedisMirror:
    """Writes changed profiles to Redis in one pipeline per batch; survives Redis outages."""

    def __init__(self, settings: Settings, redis: Redis, loader: Loader) -> None:
        self.settings = settings
        self.redis = redis
        self.loader = loader
        self.ttl = settings.redis.profile_ttl_seconds
        self.max_dirty = settings.profiles.mirror_max_dirty
        self.retry_seconds = settings.profiles.mirror_retry_seconds
        self.healthy = True
        #: customer ids changed while Redis was down (insertion-ordered, bounded)
        self.dirty: dict[str, None] = {}
        #: the dirty set overflowed: rebuild every profile of the table when Redis is back
        self.overflow = False
        self.written = 0
        self.failures = 0
        self._retry: asyncio.Task[None] | None = None
        self._all_ids: Callable[[], Iterable[str]] | None = None

    def stats(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "written": self.written,
            "failures": self.failures,
            "dirty": len(self.dirty),
            "overflow": self.overflow,
        }

    def set_id_source(self, all_ids: Callable[[], Iterable[str]]) -> None:
        """Where a full rebuild gets every customer id of this worker (the table's keys)."""
        self._all_ids = all_ids

    async def publish(self, entries: list[Entry]) -> None:
        """Write ``entries``; on failure keep them dirty and retry in the background."""
        if not entries:
            return
        if not self.healthy:
            self._mark_dirty(cid for cid, _, _ in entries)
            return
        try:
            await self._write(entries)
        except (TimeoutError, RedisError, OSError) as exc:
            self._went_down(exc)
            self._mark_dirty(cid for cid, _, _ in entries)

    async def _write(self, entries: Iterable[Entry]) -> None:
        settings = self.settings
        now = int(time.time() * 1000)
        count = 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for customer_id, view, version in entries:
                key = profile_key(settings, customer_id)
                pipe.hset(key, mapping=encode_fields(view, version, now))  # type: ignore[arg-type]
                if self.ttl:
                    pipe.expire(key, self.ttl)
                count += 1
            await pipe.execute()
        self.written += count

    def _went_down(self, exc: BaseException) -> None:
        self.failures += 1
        if self.healthy:
            log.warning("profiles mirror: Redis write failed (%r); keeping changes dirty", exc)
        self.healthy = False
        if self._retry is None or self._retry.done():
            self._retry = asyncio.ensure_future(self._recover())

    def _mark_dirty(self, customer_ids: Iterable[str]) -> None:
        if self.overflow:
            return
        dirty = self.dirty
        for customer_id in customer_ids:
            dirty[customer_id] = None
        if len(dirty) > self.max_dirty:
            # beyond the bound only "everything" is remembered: a full rebuild from the table
            log.warning("profiles mirror: %d dirty profiles, will rebuild all", len(dirty))
            dirty.clear()
            self.overflow = True

    async def _recover(self) -> None:
        while True:
            await asyncio.sleep(self.retry_seconds)
            try:
                await self.redis.ping()
                if self.overflow:
                    self.overflow = False
                    self.dirty.clear()
                    await self.rebuild()
                else:
                    await self.flush_dirty()
            except (TimeoutError, RedisError, OSError) as exc:
                self.failures += 1
                log.debug("profiles mirror: Redis still down: %r", exc)
                continue
            self.healthy = True
            log.warning("profiles mirror: Redis is back; dirty profiles written")
            return

    async def flush_dirty(self, chunk: int = 1000) -> None:
        """Write every dirty profile (read from the table now); they stay dirty on failure."""
        while self.dirty:
            ids = list(self.dirty)[:chunk]
            await self._write_ids(ids)
            for customer_id in ids:
                self.dirty.pop(customer_id, None)

    async def rebuild(self, chunk: int = 1000) -> int:
        """Write every profile this worker's table holds to Redis; returns how many."""
        if self._all_ids is None:
            return 0
        ids = list(self._all_ids())
        for start in range(0, len(ids), chunk):
            await self._write_ids(ids[start : start + chunk])
        return len(ids)

    async def _write_ids(self, ids: Iterable[str]) -> None:
        entries = []
        for customer_id in ids:
            found = self.loader(customer_id)
            if found is not None:
                entries.append((customer_id, found[0], found[1]))
        await self._write(entries)

    async def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._retry
        await self.redis.aclose()
