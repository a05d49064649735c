"""Live customer profiles: one per customer, folded from every customer event type.

Modules: :mod:`~processors.profiles.fold` (pure state and folds), :mod:`~.engine` (a batch,
replays, duplicates, stitching), :mod:`~.view` and :mod:`~.segment` (the public shape),
:mod:`~.mirror` (Redis, and ``read_profile`` for the HTTP API), :mod:`~.stitching` (internal
topics), :mod:`~.changelog` (table changelog writes through librdkafka), :mod:`~.processor`
(Faust tables, lanes, web view). ``register`` is the entry point
of ``cxstream worker --processor profiles``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import faust

    from streams.app import AppContext


def register(app: faust.App, context: AppContext) -> None:
    from processors.profiles.processor import register as register_profiles

    register_profiles(app, context)
