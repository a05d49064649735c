"""The security processor: ``register(app, context)`` for ``cxstream worker --processor security``.

Four batch lanes:

1. ``access_event`` (keyed by principal): rules per principal, the anomaly model, flags; failed
   logins are re-sent unchanged (same Avro bytes) to the internal topic
   ``<prefix>.security.login_failures`` keyed by ``ip:<pseudonym>`` and by ``dev:<device>``.
2. that internal topic: credential stuffing per ip / device (see
   :mod:`processors.security.rules.credential_stuffing`).
3. ``erasure_requested`` (keyed by customer): the customer's own state is deleted (tombstone)
   and the request is re-sent unchanged to every partition of ``<prefix>.security.erasures``;
4. that internal topic: each partition's owner drops the customer from its staff windows and
   failed-login windows. Markers keep their replayed events out (:mod:`.erasure`).

Flags go out with ``context.emit("security_flag", ...)``; every send of a batch (flags and
re-keyed failures) is awaited before the handler returns, so they are durable before the batch's
offsets commit. State: :mod:`processors.security.state`. Stats: ``GET /v1/stats/security``.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, cast

from cxstream.errors import ValidationError
from processors.erasure.processor import check_request
from processors.security.engine import Outcome, SecurityEngine
from processors.security.erasure import ERASURE_TOPIC
from processors.security.erasure import EVENT as ERASURE_EVENT
from processors.security.rules.credential_stuffing import NETWORK_TOPIC
from processors.security.state import StateStore
from streams.batching import InputEvent
from streams.codec import DecodedEvent

if TYPE_CHECKING:
    import faust

    from streams.app import AppContext

log = logging.getLogger(__name__)

NAME = "security"
EVENT = "access_event"
FLAG_EVENT = "security_flag"


def check_access(event: DecodedEvent) -> None:
    """The event must be identifiable and keyed (the schema allows empty strings)."""
    for name in ("event_id", "principal_id"):
        if not event.record.get(name):
            raise ValidationError(f"{name} is empty", schema=event.name, field=name)


def register(app: faust.App, context: AppContext) -> None:
    import faust
    from faust.web import Request, Response, View

    settings = context.settings
    partitions = settings.kafka.partitions
    json_schema: faust.Schema = faust.Schema(key_serializer="json", value_serializer="json")

    def table(name: str, help_text: str) -> Any:
        return app.Table(name, partitions=partitions, schema=json_schema, help=help_text)

    engine = SecurityEngine(
        settings,
        StateStore(table(f"{NAME}-principals", "detector state per principal; team baselines")),
        StateStore(table(f"{NAME}-networks", "failed logins per ip pseudonym / device")),
        StateStore(table(f"{NAME}-models", "anomaly model checkpoints per partition and type")),
        StateStore(table(f"{NAME}-erased", "erased customers per partition (pseudonym -> time)")),
    )
    network_topic = settings.topic(NETWORK_TOPIC)
    # River pulls in scipy: hundreds of thousands of long-lived objects that every full
    # collection walked again (~100-150 ms pauses every few seconds, measured in the worker);
    # frozen, they are never scanned (~25 ms pauses)
    gc.freeze()

    async def send(outcome: Outcome) -> None:
        pending: list[Awaitable[Any]] = []
        for record in outcome.flags:
            pending.append(await context.emit(FLAG_EVENT, record))
        for key, item in outcome.forwards:
            pending.append(
                await app.producer.send(
                    network_topic, key.encode(), item.message.value,
                    partition=None, timestamp=None, headers=None,
                )
            )  # fmt: skip
        await context.delivered(pending)
        if outcome.flags:
            log.info("%s: %d flags raised", NAME, len(outcome.flags))

    async def on_access(batch: list[InputEvent]) -> None:
        await send(engine.on_access(batch))

    async def on_network(batch: list[InputEvent]) -> None:
        await send(engine.on_network(batch))

    erasure_topic = settings.topic(ERASURE_TOPIC)

    async def on_erasure(batch: list[InputEvent]) -> None:
        engine.on_erasure(batch)
        # every partition's owner scrubs its own entries naming the customer
        pending: list[Awaitable[Any]] = []
        for item in batch:
            for partition in range(partitions):
                pending.append(
                    await app.producer.send(
                        erasure_topic, item.key, item.message.value,
                        partition=partition, timestamp=None, headers=None,
                    )
                )  # fmt: skip
        await context.delivered(pending)

    async def on_erasure_broadcast(batch: list[InputEvent]) -> None:
        changed = engine.on_erasure_broadcast(batch)
        log.info("%s: erasure on partition %d changed %d entries",
                 NAME, batch[0].partition, changed)  # fmt: skip

    # states and models live in memory between batches; a partition that moves to another
    # worker (and may come back advanced) is read again from its table
    access_topic = settings.topic(EVENT)
    held: set[int] = set()  # partitions of the access topic this worker holds (for stats)

    async def on_revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        engine.forget({tp.partition for tp in revoked})
        held.difference_update(tp.partition for tp in revoked if tp.topic == access_topic)

    async def on_assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        engine.forget({tp.partition for tp in assigned})
        held.update(tp.partition for tp in assigned if tp.topic == access_topic)

    def stats() -> dict[str, Any]:
        return {
            **engine.stats.snapshot(),
            "erased_customers": len(engine.erased),
            "erased_events_dropped": engine.erased.dropped_events,
            "erased_markers_expired": engine.erased.expired,
            "partitions": sorted(held),
        }

    # mode's handler type wants a keyword-only ``signal``; ours take it in **kwargs
    app.on_partitions_revoked.connect(cast(Any, on_revoked))
    app.on_partitions_assigned.connect(cast(Any, on_assigned))
    context.batch_agent(EVENT, on_access, step=NAME, check=check_access)
    context.batch_agent(NETWORK_TOPIC, on_network, step=f"{NAME}.network", expect=EVENT)
    context.batch_agent(ERASURE_EVENT, on_erasure, step=f"{NAME}.erasure", check=check_request)
    context.batch_agent(
        ERASURE_TOPIC, on_erasure_broadcast, step=f"{NAME}.erasure_broadcast",
        check=check_request, expect=ERASURE_EVENT,
    )  # fmt: skip
    context.stats[NAME] = stats

    @app.page("/v1/stats/security")
    class SecurityStats(View):
        """Events seen, replays/duplicates skipped, flags raised by rule and the partitions held
        by this worker."""

        async def get(self, request: Request) -> Response:
            return self.json(stats())
