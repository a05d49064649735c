"""The Redis mirror through a real Redis outage: publications made while Redis is down are
caught up from the table when it returns, even while publications keep coming (the stream does
not stop for Redis), and Redis ends equal to the table."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from redis import Redis as SyncRedis

from cxstream.settings import Settings
from processors.profiles.mirror import Entry, RedisMirror, decode_fields, profile_key, redis_for
from processors.profiles.view import profile_view
from tests.support.services import LocalStack

STEPS_AFTER_RESTART = 400


def _view(cid: str, count: int) -> dict[str, Any]:
    return profile_view(cid, {"c": {"web": [count, 1_780_000_000_000 + count]}, "v": count})


async def _scenario(stack: LocalStack, settings: Settings) -> dict[str, int]:
    customers = [f"C-OUT-{i}" for i in range(300)]
    table: dict[str, int] = {}  # customer -> version (= web count): the "profiles table"
    mirror = RedisMirror(
        settings,
        redis_for(settings),
        lambda cid: (_view(cid, table[cid]), table[cid]) if cid in table else None,
    )
    mirror.retry_seconds = 0.2
    names = frozenset({"channels", "preferred_channel", "last_seen_at", "segment"})

    async def step(i: int) -> None:
        cid = customers[i % len(customers)]
        base = table.get(cid, 0)
        table[cid] = base + 1
        entry: Entry = (cid, _view(cid, table[cid]), table[cid], names, base)
        await mirror.publish([entry])

    try:
        for i in range(600):
            await step(i)
        assert mirror.healthy
        stack.stop("redis")
        for i in range(600, 1500):
            await step(i)  # the stream goes on; Redis misses these
        assert not mirror.healthy
        assert mirror.dirty
        stack.start("redis")
        i = 1500
        # publications keep coming while the mirror catches up
        while not mirror.healthy or mirror.dirty or i < 1500 + STEPS_AFTER_RESTART:
            await step(i)
            i += 1
            await asyncio.sleep(0.002)
            assert i < 1500 + 50_000, "the mirror never caught up while publications went on"
    finally:
        await mirror.close()
    return table


def test_mirror_catches_up_after_an_outage_while_the_stream_goes_on(
    local_stack: LocalStack,
) -> None:
    base = local_stack.settings
    prefix = f"test-mout-{uuid.uuid4().hex[:8]}"
    settings = base.model_copy(
        update={"kafka": base.kafka.model_copy(update={"topic_prefix": prefix})}
    )
    table_after = asyncio.run(_scenario(local_stack, settings))
    sync = SyncRedis.from_url(settings.redis.url)
    try:
        for cid, version in table_after.items():
            found = decode_fields(sync.hgetall(profile_key(settings, cid)))
            assert found is not None, cid
            found.pop("updated_at")
            assert found == {**_view(cid, version), "version": version}, cid
    finally:
        keys = list(sync.scan_iter(match=f"{prefix}:*"))
        if keys:
            sync.delete(*keys)
        sync.close()
