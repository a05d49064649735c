"""The worker's aiokafka consumer takes ``worker.fetch_min_bytes`` and ``fetch_max_wait_ms``.

Faust builds that consumer itself (with aiokafka's ``fetch_min_bytes=1`` and a fixed 1.5 s wait);
the batching transport's consumer thread replaces both with the settings (no broker needed:
the consumer is built, not started).
"""

from __future__ import annotations

from cxstream.settings import Settings
from streams.app import create_app


async def test_the_worker_consumer_fetches_with_the_settings() -> None:
    base = Settings()
    settings = base.model_copy(
        update={
            "worker": base.worker.model_copy(
                update={"fetch_min_bytes": 12_345, "fetch_max_wait_ms": 40}
            )
        }
    )
    app = create_app(settings)
    thread = app.consumer._new_consumer_thread()
    consumer = thread._create_worker_consumer(app.transport)
    try:
        assert consumer._fetch_min_bytes == 12_345
        assert consumer._fetch_max_wait_ms == 40
    finally:
        await consumer.stop()

