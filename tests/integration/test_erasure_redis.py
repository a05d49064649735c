"""Erasure from the real Redis: every key of the customer goes, nobody else's; the shared block
list keeps the latest erasure time."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio

from cxstream.erasure import (
    ErasureMark,
    RedisBlockListStore,
    customer_pseudonym,
    erase_from_redis,
    erase_from_redis_async,
)
from cxstream.settings import Settings
from tests.support.pii import PiiSources, scan_for_planted_pii
from tests.support.services import LocalStack

pytestmark = pytest.mark.integration
T_ERASED = 1_767_225_600_000


@pytest.fixture
def env(local_stack: LocalStack) -> Iterator[tuple[Settings, redis.Redis]]:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    settings = local_stack.settings.model_copy(
        update={"kafka": local_stack.settings.kafka.model_copy(update={"topic_prefix": prefix})}
    )
    client = redis.Redis.from_url(settings.redis.url)
    try:
        yield settings, client
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


def plant(client: redis.Redis, settings: Settings, customer_id: str) -> list[str]:
    """The kinds of keys processors keep per customer (hash, string, set, sub-keys)."""
    p = settings.kafka.topic_prefix
    pseudonym = customer_pseudonym(customer_id, settings)
    keys = [
        f"{p}:profile:{customer_id}",
        f"{p}:reco:{customer_id}",
        f"{p}:sla:{customer_id}:fb-1",
        f"{p}:flags:{pseudonym}",
    ]
    client.hset(keys[0], mapping={"segment": '"retail"', "email_token": '"cxe1.k1.xyz"'})
    client.set(keys[1], '["card-gold"]')
    client.sadd(keys[2], "open")
    client.set(keys[3], "1")
    return keys


def test_every_key_of_the_customer_goes_and_nobody_elses(
    env: tuple[Settings, redis.Redis],
) -> None:
    settings, client = env
    p = settings.kafka.topic_prefix
    target = plant(client, settings, "c1")
    others = plant(client, settings, "c12") + plant(client, settings, "xc1")
    client.set(f"{p}:counter:total", "3")

    deleted = erase_from_redis(client, settings, "c1")

    assert sorted(deleted) == sorted(target)
    assert not any(client.exists(k) for k in target)
    assert all(client.exists(k) for k in [*others, f"{p}:counter:total"])
    sources = PiiSources(redis=client, redis_match=f"{p}:*")
    leftovers = scan_for_planted_pii([customer_pseudonym("c1", settings)], sources)
    assert leftovers == []
    assert erase_from_redis(client, settings, "c1") == []  # idempotent


async def test_async_client_erases_the_same_keys(env: tuple[Settings, redis.Redis]) -> None:
    settings, client = env
    target = plant(client, settings, "c*[7]")  # glob characters in an id
    other = plant(client, settings, "c17")
    aclient = redis.asyncio.Redis.from_url(settings.redis.url)
    try:
        deleted = await erase_from_redis_async(aclient, settings, "c*[7]")
    finally:
        await aclient.aclose()
    assert sorted(deleted) == sorted(target)
    assert all(client.exists(k) for k in other)


def test_block_list_store_keeps_the_latest_erasure(env: tuple[Settings, redis.Redis]) -> None:
    settings, client = env
    store = RedisBlockListStore(client, settings)
    pseudonym = customer_pseudonym("c1", settings)
    store.add(ErasureMark(pseudonym, T_ERASED + 10))
    store.add(ErasureMark(pseudonym, T_ERASED))  # an older request replayed: no roll back
    store.add(ErasureMark(customer_pseudonym("c2", settings), T_ERASED))
    blocked = store.load()
    assert len(blocked) == 2
    assert blocked.blocks("c1", T_ERASED + 5)
    assert not blocked.blocks("c1", T_ERASED + 11)
    assert not blocked.blocks("c3", T_ERASED)
    # the shared list names customers by pseudonym only
    key = store.key
    assert scan_for_planted_pii(["c1", "c2"], PiiSources(redis=client, redis_match=key)) == []
