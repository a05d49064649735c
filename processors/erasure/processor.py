"""The erasure processor: an ``erasure_requested`` batch, end to end, for the shared stores.

Per batch (requests are rare; the batch is the unit so that one settle wait covers them all):

1. **block**: each customer's :class:`~cxstream.erasure.ErasureMark` goes to ClickHouse
   ``erased_customers`` and to the Redis sorted set (:class:`RedisBlockListStore`), *before*
   anything is deleted. Sinks reload the list every ``erasure.blocklist_refresh_seconds``, so
   the processor then waits that long (plus ``erasure.settle_margin_seconds``): a sink batch
   built before the mark, which still holds the customer's events, has landed by then, and every
   later one drops them. Deleting first would let such a batch bring the customer back.
2. **clickhouse**: :func:`erase_customer_from_clickhouse` (delete mutations, waited for).
3. **redis**: :func:`erase_from_redis_async` (every key naming the id or the pseudonym).
4. **audit**: one ``erasure_audit`` row per request and step (``block_list``, ``clickhouse``,
   ``redis``), named by pseudonym only, through :meth:`ErasureLedger.record_step`, so a
   replayed request keeps the first account.

Per-customer state inside other processors (profiles, the recommender, ...) is theirs: each
handles ``erasure_requested`` on its own lane.

ClickHouse calls block, so they run on one thread of our own (one connection, never shared)
and the worker's event loop keeps serving the other lanes meanwhile. An unreachable ClickHouse
or Redis is retried with backoff (``erasure.retry_*``) and never skipped: the batch is acked
only after every step of every request is done, and re-running a step changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from cxstream.erasure import (
    AuditRecord,
    ClickHouseErasure,
    ErasureLedger,
    ErasureMark,
    RedisBlockListStore,
    erase_customer_from_clickhouse,
    erase_from_redis_async,
)
from cxstream.errors import ServiceError, ValidationError
from cxstream.settings import Settings
from streams.batching import InputEvent
from streams.codec import DecodedEvent

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from sinks.clickhouse.backend import ClickHouseBackend

log = logging.getLogger(__name__)

NAME = "erasure"
EVENT = "erasure_requested"
T = TypeVar("T")


def check_request(event: DecodedEvent) -> None:
    """An erasure request must name the customer (the schema allows an empty string)."""
    for name in ("event_id", "customer_id"):
        if not event.record.get(name):
            raise ValidationError(f"{name} is empty", schema=event.name, field=name)


class ErasureProcessor:
    """Applies ``erasure_requested`` batches; see the module docstring for the steps."""

    def __init__(
        self,
        settings: Settings,
        *,
        backend_factory: Callable[[Settings], ClickHouseBackend],
        redis_sync: redis.Redis,
        redis_async: redis.asyncio.Redis,
    ) -> None:
        self.settings = settings
        self._backend_factory = backend_factory
        self._backend: ClickHouseBackend | None = None  # only touched on the executor's thread
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="erasure-ch")
        self._store = RedisBlockListStore(redis_sync, settings)
        self._redis = redis_async
        self.counts: dict[str, Any] = {
            "requests": 0, "batches": 0, "clickhouse_rows_removed": 0, "redis_keys_removed": 0,
            "retries": 0, "last_batch_seconds": 0.0, "last_error": None,
        }  # fmt: skip

    # -- one batch ---------------------------------------------------------------------------

    async def handle(self, batch: Sequence[InputEvent]) -> None:
        started = time.monotonic()
        # one entry per (customer, request): a batch may carry a request and its replay
        requests: dict[tuple[str, str], dict[str, Any]] = {}
        for item in batch:
            mark = ErasureMark.from_request(item.record, self.settings)
            requests.setdefault((mark.pseudonym, mark.request_id), item.record)
        marks = [ErasureMark.from_request(r, self.settings) for r in requests.values()]
        await self._in_thread("block", self._block, marks)
        erasure = self.settings.erasure
        await asyncio.sleep(erasure.blocklist_refresh_seconds + erasure.settle_margin_seconds)
        for mark, record in zip(marks, requests.values(), strict=True):
            result = await self._in_thread("clickhouse", self._erase_clickhouse, record)
            customer_id = str(record["customer_id"])
            keys = await self._retrying(
                "redis", partial(erase_from_redis_async, self._redis, self.settings, customer_id)
            )
            audit = AuditRecord(
                mark.pseudonym, mark.request_id, "redis", mark.erased_at_ms,
                rows_removed=len(keys), detail=json.dumps(_key_kinds(keys), sort_keys=True),
            )  # fmt: skip
            await self._in_thread("audit", self._audit, audit)
            self.counts["clickhouse_rows_removed"] += result.total
            self.counts["redis_keys_removed"] += len(keys)
            log.info(
                "%s: customer %s (request %s) erased: %d ClickHouse rows, %d Redis keys",
                NAME, mark.pseudonym[:12], mark.request_id, result.total, len(keys),
            )  # fmt: skip
        self.counts["requests"] += len(marks)
        self.counts["batches"] += 1
        self.counts["last_batch_seconds"] = round(time.monotonic() - started, 3)

    def _block(self, marks: Sequence[ErasureMark]) -> None:
        ledger = ErasureLedger(self._clickhouse(), self.settings)
        for mark in marks:
            ledger.mark_erased(mark)
            try:
                self._store.add(mark)
            except Exception as exc:  # redis-py's own hierarchy: name the step for the retry
                raise ServiceError(f"erasure: Redis block list {self._store.key}: {exc}") from exc
            ledger.record_step(
                AuditRecord(mark.pseudonym, mark.request_id, "block_list", mark.erased_at_ms,
                            detail="clickhouse,redis")
            )  # fmt: skip

    def _erase_clickhouse(self, record: dict[str, Any]) -> ClickHouseErasure:
        return erase_customer_from_clickhouse(self._clickhouse(), self.settings, record)

    def _audit(self, audit: AuditRecord) -> None:
        ErasureLedger(self._clickhouse(), self.settings).record_step(audit)

    def _clickhouse(self) -> ClickHouseBackend:
        if self._backend is None:
            self._backend = self._backend_factory(self.settings)
        return self._backend

    # -- retries -----------------------------------------------------------------------------

    async def _in_thread(self, step: str, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()

        async def call() -> T:
            return await loop.run_in_executor(self._executor, fn, *args)

        return await self._retrying(step, call)

    async def _retrying(self, step: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` until it succeeds: an erasure is never skipped, only delayed."""
        erasure = self.settings.erasure
        delay = erasure.retry_initial_seconds
        while True:
            try:
                return await call()
            except ServiceError as exc:
                self.counts["retries"] += 1
                self.counts["last_error"] = f"{step}: {exc}"
                log.warning("%s: step %s failed (retry in %.1f s): %s", NAME, step, delay, exc)
                if step != "redis":
                    await self._in_reset()
                await asyncio.sleep(delay)
                delay = min(delay * 2, erasure.retry_max_seconds)

    async def _in_reset(self) -> None:
        """Drop the ClickHouse connection after a failure (the next call opens a new one)."""

        def reset() -> None:
            backend, self._backend = self._backend, None
            if backend is not None:
                try:
                    backend.close()
                except Exception as exc:  # closing a broken connection: nothing to save
                    log.debug("%s: closing the ClickHouse connection: %s", NAME, exc)

        await asyncio.get_running_loop().run_in_executor(self._executor, reset)

    # -- lifecycle, stats --------------------------------------------------------------------

    async def close(self) -> None:
        await self._in_reset()
        self._executor.shutdown(wait=True)
        await self._redis.aclose()
        self._store.client.close()

    def stats(self) -> dict[str, Any]:
        return dict(self.counts)


def _key_kinds(keys: Sequence[str]) -> dict[str, int]:
    """Deleted Redis keys by kind (``{prefix}:<kind>:...``): the audit names no id."""
    kinds: dict[str, int] = {}
    for key in keys:
        parts = key.split(":")
        kind = parts[1] if len(parts) > 2 else "other"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds
