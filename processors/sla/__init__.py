"""Feedback SLA clocks (issue 5): time to first response per feedback item, with a warning, a
breach and escalations fired exactly once per level (after dedupe by ``alert_id``).

Modules: :mod:`.policy` (settings -> due times, business calendar), :mod:`.lifecycle` (item
state from its events), :mod:`.index` (due-time heap per partition), :mod:`.engine` (pure
engine), :mod:`.store` (segments), :mod:`.erasure` (erased customers' markers),
:mod:`.processor` (the Faust wiring). ``register`` is what ``cxstream worker
--processor sla`` calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import faust

    from streams.app import AppContext


def register(app: faust.App, context: AppContext) -> None:
    from processors.sla.processor import register as register_sla

    register_sla(app, context)
