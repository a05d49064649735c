"""The Redis mirror of profiles, and the reader the HTTP API uses.

Layout: one hash per customer at ``{topic_prefix}:profile:{customer_id}``; one field per
top-level attribute of :func:`processors.profiles.view.profile_view`, each value JSON-encoded,
plus ``version`` (events applied to the profile) and ``updated_at`` (ms, when mirrored). The
TTL (``settings.redis.profile_ttl_seconds``, 0 = none) is renewed with every write.

Writes are *partial*: a publication names the attributes its events could change
(:func:`processors.profiles.view.touched_attributes`) and the version of the state before
them (its *base*); only those attributes (plus ``version`` and ``updated_at``) are encoded and
sent. The write runs in a Lua script that applies it only if the hash holds exactly the base
version, i.e. every other field was written from the very state the changes started from
(a version is one state: every applied change bumps it). Otherwise (hash missing, expired,
Redis restarted empty, a failed earlier write, another worker's write) the customer is written
in full right after, as the table holds it now (the loader: a publication's entry carries only
its changed attributes); recoveries, replays and rebuilds always write in full. A hash holding a
newer version than the write is left alone.
One ``EVALSHA`` per chunk of customers, packed by hiredis and all sent at once on one connection
(Redis runs them back to back while the worker folds the next batches), replaces
an HSET + EXPIRE pair per customer through redis-py's pipeline, whose Python-side command
packing and reply parsing were the worker's largest cost (measured: 144 -> 14 us/customer).
A customer's fields travel as one argument, NUL-separated (JSON never holds a raw NUL: orjson
escapes it), which the script splits: hiredis packed each of a full write's ~75 arguments on its
own, 20-28 us per customer against 6 for the joined one (the new customers of ``bench
profiles`` at 10k/s); Redis spends the same time either way (23-34 us per full write, measured
with its ``used_cpu`` counters).
The script touches several keys, so it needs a single Redis (or all profile keys in one slot).

Redis is a view: the profiles table (changelog-backed) is the truth. If Redis fails, the
stream goes on: changed customer ids are kept in a bounded dirty set (``settings.profiles.
mirror_max_dirty``; beyond it only a "rebuild everything" flag is kept) and a background task
probes Redis every ``mirror_retry_seconds``; once it answers, the dirty profiles (or, after an
overflow, every profile this worker holds) are re-read from the table and written in full
(customers the table no longer has, e.g. erased ones, are deleted). The same
:meth:`RedisMirror.rebuild` rebuilds Redis from the table after Redis lost its data.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import hiredis
import orjson
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from cxstream.redis_connection import async_redis
from cxstream.settings import Settings

log = logging.getLogger(__name__)

#: compact JSON as bytes (orjson; what hiredis packs without another encode)
_dumpb = orjson.dumps
#: (customer id, view or None to delete, version, attributes to write or None for all, base
#: version: the version of the state the other attributes were last written from). A partial
#: write's view needs only the attributes it names (:func:`needs_full_view` tells which).
Entry = tuple[str, dict[str, Any] | None, int, frozenset[str] | None, int]
#: customer id -> (view, version) from the table, or None when unknown
Loader = Callable[[str], tuple[dict[str, Any], int] | None]


def needs_full_view(names: frozenset[str] | None, base: int) -> bool:
    """Whether a publication is written in full (so its entry needs every attribute)."""
    return names is None or base == 0  # base 0: Redis cannot hold it yet


def profile_key(settings: Settings, customer_id: str) -> str:
    return f"{settings.kafka.topic_prefix}:profile:{customer_id}"


def _field_values(
    view: Mapping[str, Any], names: Iterable[str], version: int, updated_at: int
) -> dict[str, bytes]:
    """Hash fields ``names`` of a view as JSON bytes, plus version and updated_at."""
    fields = {name: _dumpb(view[name]) for name in names}
    fields["version"] = b"%d" % version
    fields["updated_at"] = b"%d" % updated_at
    return fields


def _field_blob(
    view: Mapping[str, Any], names: Iterable[str], version: int, updated_at: int
) -> tuple[bytes, int]:
    """:func:`_field_values` as the script's one argument: name, value, name, ... joined by
    NUL bytes (neither attribute names nor JSON hold one); and the number of fields."""
    parts: list[bytes] = []
    append = parts.append
    for name in names:
        append(name.encode())
        append(_dumpb(view[name]))
    parts += (b"version", b"%d" % version, b"updated_at", b"%d" % updated_at)
    return b"\0".join(parts), len(parts) // 2


def encode_fields(view: Mapping[str, Any], version: int, updated_at: int) -> dict[str, str]:
    """The hash fields of a view: JSON per attribute, plus version and updated_at."""
    return {
        name: value.decode()
        for name, value in _field_values(view, view, version, updated_at).items()
    }


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
    """An asyncio client from ``settings.redis`` (URL, ACL user, TLS: the platform's one
    mapping in :mod:`cxstream.redis_connection`) with short timeouts (a slow Redis is down)."""
    timeout = settings.profiles.mirror_timeout_seconds
    return async_redis(settings, timeout=timeout, connect_timeout=timeout)


#: one chunk's writes: KEYS = profile keys; ARGV = ttl, then four per key: mode ("f" full write,
#: "p" partial write, "d" delete), version, base version, and the fields as one argument (name,
#: value, name, ... separated by NUL bytes; empty for a delete).
#: A hash holding a newer version is left alone (a publication of an older owner arriving
#: late). A partial write needs the hash to hold exactly the base version, the state its
#: unwritten fields come from; otherwise (missing, expired, written from another state) it is
#: skipped and its index (1-based) returned, and the caller writes that customer in full.
_WRITE_SCRIPT = b"""
local ttl = tonumber(ARGV[1])
local find, sub = string.find, string.sub
local missing = {}
for k = 1, #KEYS do
  local key = KEYS[k]
  local i = 4 * k - 2
  local mode = ARGV[i]
  if mode == 'd' then
    redis.call('UNLINK', key)
  else
    local version = tonumber(ARGV[i + 1])
    local base = ARGV[i + 2]
    local cur = redis.call('HGET', key, 'version')
    if not (cur and tonumber(cur) > version) then
      if mode == 'f' or cur == base then
        local joined = ARGV[i + 3]
        local fields, n, pos = {}, 0, 1
        while true do
          local stop = find(joined, '\\0', pos, true)
          n = n + 1
          if not stop then
            fields[n] = sub(joined, pos)
            break
          end
          fields[n] = sub(joined, pos, stop - 1)
          pos = stop + 1
        end
        redis.call('HSET', key, unpack(fields))
        if ttl > 0 then redis.call('EXPIRE', key, ttl) end
      else
        missing[#missing + 1] = k
      end
    end
  end
end
return missing
"""
#: customers per script call (Redis runs a script without serving others meanwhile)
CHUNK = 500


def encode_some(
    view: Mapping[str, Any], names: Iterable[str], version: int, updated_at: int
) -> dict[str, str]:
    """The hash fields ``names`` of a view (as :func:`encode_fields` encodes them)."""
    return {
        name: value.decode()
        for name, value in _field_values(view, names, version, updated_at).items()
    }


class RedisMirror:
    """Writes published profiles to Redis (partial writes, one script call per chunk)."""

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
        self.fields_written = 0
        self.full_writes = 0
        self.deleted = 0
        self.failures = 0
        #: time spent waiting for a previous write to finish (publication held back by Redis)
        self.drain_wait_seconds = 0.0
        self._sha: bytes | None = None
        self._retry: asyncio.Task[None] | None = None
        #: the newest submitted write; each submitted write runs after the one before it
        self._last: asyncio.Future[bool] | None = None
        self._all_ids: Callable[[], Iterable[str]] | None = None

    def stats(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "written": self.written,
            "full_writes": self.full_writes,
            "fields_written": self.fields_written,
            "deleted": self.deleted,
            "failures": self.failures,
            "dirty": len(self.dirty),
            "overflow": self.overflow,
            "drain_wait_seconds": round(self.drain_wait_seconds, 3),
        }

    def set_id_source(self, all_ids: Callable[[], Iterable[str]]) -> None:
        """Where a full rebuild gets every customer id of this worker (the table's keys)."""
        self._all_ids = all_ids

    async def publish(self, entries: list[Entry]) -> bool:
        """Write ``entries``; on failure keep them dirty and retry in the background.

        Returns whether Redis took them (``False``: they are dirty, written in full later).
        """
        if not entries:
            return True
        if not self.healthy:
            self._mark_dirty(entry[0] for entry in entries)
            return False
        try:
            await self._write(entries)
        except (TimeoutError, RedisError, OSError) as exc:
            self._went_down(exc)
            self._mark_dirty(entry[0] for entry in entries)
            return False
        return True

    def submit(self, entries: list[Entry]) -> asyncio.Future[bool]:
        """:meth:`publish` ``entries`` in the background, after every write submitted before.

        The worker folds the next batches while Redis executes this one (awaiting each write
        left the worker idle a third of the time at 10k events/s). The future's result is
        :meth:`publish`'s; an unexpected error is its exception.
        """
        previous = self._last

        async def write() -> bool:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])  # its outcome is its own future's
            return await self.publish(entries)

        task = self._last = asyncio.ensure_future(write())
        return task

    async def drain(self) -> None:
        """Wait for every submitted write (their outcomes stay in their futures)."""
        if self._last is not None and not self._last.done():
            began = time.perf_counter()
            await asyncio.wait([self._last])
            self.drain_wait_seconds += time.perf_counter() - began

    async def delete(self, customer_ids: Iterable[str]) -> bool:
        """Delete the hashes of ``customer_ids`` (erasure), after every submitted write;
        dirty (re-checked later) on failure."""
        return await self.submit([(cid, None, 0, None, 0) for cid in customer_ids])

    async def _write(self, entries: list[Entry]) -> None:
        settings = self.settings
        now = int(time.time() * 1000)
        ttl = str(self.ttl)
        calls: list[tuple[list[str], list[str | bytes]]] = []
        fields_written = 0
        for start in range(0, len(entries), CHUNK):
            keys: list[str] = []
            argv: list[str | bytes] = [ttl]
            append = argv.append
            extend = argv.extend
            for customer_id, view, version, names, base in entries[start : start + CHUNK]:
                keys.append(profile_key(settings, customer_id))
                if view is None:
                    extend(("d", "0", "", b""))
                    continue
                if needs_full_view(names, base):
                    joined, count = _field_blob(view, view, version, now)
                    append("f")
                    self.full_writes += 1
                else:
                    assert names is not None
                    joined, count = _field_blob(view, names, version, now)
                    append("p")
                append(str(version))
                append(str(base))
                append(joined)
                fields_written += count
            calls.append((keys, argv))
        replies = await self._run(calls)
        self.fields_written += fields_written
        # partial writes of hashes Redis no longer has (or holds from another state): write
        # those customers in full, from the table (a publication carries only the attributes
        # its events changed; the table may be newer, never older)
        missing = [
            entries[start + index - 1][0]
            for start, reply in zip(range(0, len(entries), CHUNK), replies, strict=True)
            for index in reply
        ]
        if missing:
            await self._write_ids(missing)
        deleted = sum(1 for entry in entries if entry[1] is None)
        self.deleted += deleted
        self.written += len(entries) - deleted

    async def _run(self, calls: list[tuple[list[str], list[str | bytes]]]) -> list[list[int]]:
        """One script call per chunk, all sent at once, then every reply read (loading the
        script when Redis does not know it).

        Sent together, Redis runs the chunks back to back: sent one by one, each next chunk
        waited for the worker's loop to come round (a lane batch holds it for tens of ms), and
        the next publication waited for the previous write (bench profiles: 1.4-1.7 s of a 6 s
        run; 0.37-0.41 s with this and the drain loop's yield after each lane batch).
        """
        replies: list[list[int] | None] = [None] * len(calls)
        for attempt in (1, 2):
            if self._sha is None:
                sha = await self.redis.script_load(_WRITE_SCRIPT)
                self._sha = sha.encode() if isinstance(sha, str) else sha
            todo = [i for i, reply in enumerate(replies) if reply is None]
            packed = []
            for i in todo:
                keys, argv = calls[i]
                command: tuple[Any, ...] = (b"EVALSHA", self._sha, str(len(keys)), *keys, *argv)
                packed.append(hiredis.pack_command(command))
            pool = self.redis.connection_pool
            conn = await pool.get_connection()
            unknown_script = False
            try:
                await conn.send_packed_command(packed, check_health=False)
                for i in todo:
                    try:
                        reply = await conn.read_response()
                    except NoScriptError:
                        unknown_script = True  # this call did not run; read the others
                        continue
                    replies[i] = [int(index) for index in reply]
            except BaseException:
                # replies may still be on the wire: this connection is out of step
                await conn.disconnect()
                raise
            finally:
                await pool.release(conn)
            if not unknown_script:
                return [reply for reply in replies if reply is not None]
            if attempt == 1:
                self._sha = None  # Redis restarted or flushed its scripts
        raise RedisError("profiles mirror: write script not accepted after reloading it")

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
                # publications write directly again while the dirty ones are caught up: under
                # a steady stream the dirty set otherwise refilled as fast as it was written
                # (seen under load: Redis never declared back). Safe: a partial write on a
                # stale hash becomes a full write, and no write replaces a newer version.
                self.healthy = True
                if self.overflow:
                    self.overflow = False
                    self.dirty.clear()
                    await self.rebuild()
                else:
                    await self.flush_dirty()
            except (TimeoutError, RedisError, OSError) as exc:
                self.healthy = False
                self.failures += 1
                log.debug("profiles mirror: Redis still down: %r", exc)
                continue
            if not self.healthy or self.dirty or self.overflow:
                continue  # a publication failed meanwhile: keep recovering
            log.warning("profiles mirror: Redis is back; dirty profiles written")
            return

    async def flush_dirty(self, chunk: int = 1000) -> None:
        """Write every dirty profile (read from the table now); they stay dirty on failure."""
        while self.dirty:
            ids = list(itertools.islice(self.dirty, chunk))
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
        entries: list[Entry] = []
        for customer_id in ids:
            found = self.loader(customer_id)
            if found is None:
                entries.append((customer_id, None, 0, None, 0))  # not in the table: erased
            else:
                entries.append((customer_id, found[0], found[1], None, 0))
        await self._write(entries)

    async def close(self) -> None:
        await self.drain()
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._retry
        await self.redis.aclose()
