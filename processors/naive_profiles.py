"""The naive baseline of ``cxstream bench pipeline``: profiles the way a first Faust app would.

ONE plain ``@app.agent`` over every customer input topic, one event at a time, on Faust's own
per-message path (no batch lane): per event it decodes the raw Avro bytes with the codec,
reads the customer's profile from a Faust table, folds the event with
:func:`processors.profiles.fold.fold_event` (the same fold the real processor applies) and
writes the table back. Faust acks each event when the agent asks for the next one.

It exists only to be measured against (BRIEF §3: Faust's per-message path costs ~160 us an
event); it is not in ``processors.PROCESSORS``. Run it with
``cxstream worker -p processors.naive_profiles``. What it leaves out on purpose, because the
baseline is about the per-event path: the Redis mirror, snapshots, stitching of anonymous
activity and replay/duplicate detection (a replay after a crash double-counts here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from processors.profiles.engine import decode_state, encode_state
from processors.profiles.fold import PROFILE_EVENTS, customer_of, fold_event
from streams.topics import INPUT_EVENTS

if TYPE_CHECKING:
    import faust

    from streams.app import AppContext

NAME = "naive_profiles"
#: the customer input topics the real profiles processor reads (its own outputs excluded)
EVENTS: tuple[str, ...] = tuple(name for name in PROFILE_EVENTS if name in INPUT_EVENTS)


def register(app: faust.App, context: AppContext) -> None:
    import faust

    settings = context.settings
    codec = context.codec
    table = app.Table(
        NAME,
        partitions=settings.kafka.partitions,
        key_type=bytes,
        value_type=bytes,
        schema=faust.Schema(key_serializer="raw", value_serializer="raw"),
        help="customer id -> profile (JSON), written once per event",
    )
    # one Faust topic over every input topic, raw bytes: the agent decodes each value itself
    source = app.topic(
        *(settings.topic(name) for name in EVENTS),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    counts = {"events": 0, "applied": 0, "skipped": 0, "undecodable": 0}

    @app.agent(source, name=NAME)
    async def naive_profiles(stream: Any) -> None:
        async for value in stream:
            counts["events"] += 1
            try:
                decoded = codec.decode(value)
            except Exception:  # the baseline only counts bad bytes; the real path dead-letters
                counts["undecodable"] += 1
                continue
            customer = customer_of(decoded.name, decoded.record)
            if customer is None:
                counts["skipped"] += 1  # staff access, anonymous visits
                continue
            key = customer.encode()
            state = decode_state(table.get(key))
            fold_event(state, decoded.name, decoded.record)
            table[key] = encode_state(state)
            counts["applied"] += 1

    context.stats[NAME] = lambda: {**counts, "customers": len(table)}
