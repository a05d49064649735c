"""Real-time KPIs of the CX plan: event-time windows, partial measurements, breach alerts.

``definitions`` (which KPIs, from which events), ``windows`` (minute buckets and the tumbling
and rolling windows over them), ``breach`` (global values and alerts), ``processor``
(``register(app, context)``: the Faust wiring). Run with ``cxstream worker --processor kpis``.
"""

from __future__ import annotations

from processors.kpis.processor import register

__all__ = ["register"]
