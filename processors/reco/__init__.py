"""The recommender processor: learns from feedback, serves top-k lists to Redis, emits them.

``register(app, context)`` subscribes (batch lanes) to customer_registered,
product_holding_changed, consent_changed, transaction, recommendation_feedback and
erasure_requested; see :mod:`processors.reco.processor`. Stats at ``GET /v1/stats/reco``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import faust

    from streams.app import AppContext

NAME = "reco"


def register(app: faust.App, context: AppContext) -> None:
    import faust
    from faust.web import Request, Response, View

    from cxstream.redis_connection import sync_redis
    from processors.reco.processor import EVENTS, RecoProcessor

    settings = context.settings
    json_schema: faust.Schema = faust.Schema(key_serializer="json", value_serializer="json")
    table = app.Table(
        f"{NAME}-customers",
        partitions=settings.kafka.partitions,
        schema=json_schema,
        help="recommender state per customer (features, last served list, applied offsets)",
    )
    # TLS / ACL user / timeouts from the settings (a bare from_url ignored them)
    client = sync_redis(settings)
    processor = RecoProcessor(settings, context, table, client)
    for event in EVENTS:
        context.batch_agent(event, processor.handle, step=NAME)

    # learners follow their partitions (processors.reco.processor: one learner per partition)
    async def on_revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        processor.on_revoked(revoked)

    async def on_assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        # partitions kept through the rebalance were released on revocation: load them again
        processor.on_assigned(assigned)

    async def on_shutdown(sender: Any, **kwargs: Any) -> None:
        # after the consumer stopped: the last batches are in the learners
        processor.save_all()

    # mode's handler type wants a keyword-only ``signal``; ours take it in **kwargs
    @app.timer(max(1.0, settings.reco.checkpoint_interval_seconds / 2))
    async def checkpoint_when_quiet() -> None:
        # batches save checkpoints when due; this covers a partition whose traffic stopped
        # before its interval was over (it would otherwise keep an old checkpoint)
        await processor.checkpoint_due()

    app.on_partitions_revoked.connect(cast(Any, on_revoked))
    app.on_partitions_assigned.connect(cast(Any, on_assigned))
    app.on_before_shutdown.connect(cast(Any, on_shutdown))

    def stats() -> dict[str, Any]:
        return processor.stats()

    context.stats[NAME] = stats

    @app.page("/v1/stats/reco")
    class RecoStats(View):
        """Prequential metrics, learning and serving counts of this worker."""

        async def get(self, request: Request) -> Response:
            return self.json(stats())
