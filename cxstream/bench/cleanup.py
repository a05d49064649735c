"""What a benchmark leaves behind on the shared local services, removed after its run."""

from __future__ import annotations

from cxstream.redis_connection import sync_redis
from cxstream.settings import Settings


def delete_redis_prefix(settings: Settings, prefix: str) -> int:
    """Delete every Redis key under ``prefix:``; returns how many.

    Left behind, a run's keys (70k per ``bench profiles``) make every later Redis snapshot and
    AOF rewrite longer: forks that took a core from the next run's measurement.
    """
    client = sync_redis(settings)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += client.unlink(*batch)
    finally:
        client.close()
    return deleted
