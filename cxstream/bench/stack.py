"""``cxstream bench stack``: cold start of the native local stack (jars already fetched).

Stops the stack if it runs, then starts it ``cycles`` times from stopped and records how long
each service took from process start to its first healthy answer from a real client (Kafka
``list_topics``, Redis ``PING``, ClickHouse ``SELECT 1``). Data is kept between cycles, as on a
developer's machine; the first ever start also formats Kafka's storage (``prepare_seconds``).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from cxstream.settings import Settings
from cxstream.stack import manager


def run(settings: Settings, cycles: int = 3) -> dict[str, Any]:
    manager.fetch(settings)
    per_service: dict[str, list[float]] = {}
    wall: list[float] = []
    for _ in range(cycles):
        manager.down(settings)
        began = time.monotonic()
        results = manager.up(settings)
        wall.append(time.monotonic() - began)
        for result in results:
            per_service.setdefault(result.name, []).append(result.seconds + result.prepare_seconds)
    figures: dict[str, Any] = {
        f"{name}_start_s_median": round(statistics.median(times), 2)
        for name, times in per_service.items()
    }
    figures.update(
        {f"{name}_start_s_max": round(max(times), 2) for name, times in per_service.items()}
    )
    figures["stack_up_wall_s_median"] = round(statistics.median(wall), 2)
    figures["stack_up_wall_s_max"] = round(max(wall), 2)
    figures["target_s"] = 60
    figures["meets_target"] = max(wall) <= 60
    figures["settings"] = {
        "cycles": cycles,
        "kafka_version": settings.stack.kafka_version,
        "kafka_heap": settings.stack.kafka_heap,
    }
    return figures
