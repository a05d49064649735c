"""The right-to-erasure processor (``cxstream worker --processor erasure``).

``register(app, context)`` subscribes a batch lane to ``erasure_requested``: block the customer
(shared block list), delete them from ClickHouse and Redis, audit every step; see
:mod:`processors.erasure.processor`. Stats under ``erasure`` at ``GET /v1/stats``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import faust

    from streams.app import AppContext


def register(app: faust.App, context: AppContext) -> None:
    from cxstream.redis_connection import async_redis, sync_redis
    from processors.erasure.processor import EVENT, NAME, ErasureProcessor, check_request
    from sinks.clickhouse.backend import make_backend

    settings = context.settings
    processor = ErasureProcessor(
        settings,
        backend_factory=make_backend,
        redis_sync=sync_redis(settings),
        redis_async=async_redis(settings),
    )
    context.batch_agent(EVENT, processor.handle, step=NAME, check=check_request)
    context.stats[NAME] = processor.stats

    async def on_shutdown(sender: Any, **kwargs: Any) -> None:
        await processor.close()

    # after the consumer stopped (no batch in hand); mode's handler type wants a keyword-only
    # ``signal``, ours takes it in **kwargs
    app.on_before_shutdown.connect(cast(Any, on_shutdown))
