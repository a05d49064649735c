"""Make Faust's producer-buffer flush wait until every buffered message was handed over.

Table writes (changelog messages) do not go to the Kafka client directly: ``Table.__setitem__``
puts them in Faust's ``ProducerBuffer``, whose background task hands them one at a time to
aiokafka. Before committing offsets Faust calls ``producer.flush()``, which first flushes that
buffer and then aiokafka. In faust-streaming 0.15 the buffer's flush (``flush_atmost(None)``)
*returns as soon as no message was handed over for 0.1 s*, with messages still waiting (read
from faust/transport/producer.py): a busy event loop, a broker that is slow to answer or a
partition batch that is full is enough. aiokafka's flush then only covers what it already
holds, the offsets commit, and a SIGKILL loses table writes whose source events will never be
replayed. The fault suite hit this (profiles one or more events short after worker kills).

:func:`install_complete_flush` replaces that flush with one that returns only when the buffer is
empty *and* the message taken from it last has been handed to aiokafka (the background task
takes a message off the queue before sending it, so "queue empty" alone is one message short).
It waits for as long as that takes (a commit must not overtake its effects); every 10 s of
waiting is logged with the number of messages still buffered.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

log = logging.getLogger(__name__)

#: how often a long flush reports that it is still waiting
REPORT_EVERY_SECONDS = 10.0


@functools.cache
def install_complete_flush() -> None:
    """Patch ``faust.transport.producer.ProducerBuffer`` (once per process, before app start)."""
    from faust.transport.producer import ProducerBuffer

    send_one = ProducerBuffer._send_pending

    async def send_pending(self: Any, fut: Any) -> None:
        self.cx_in_hand = getattr(self, "cx_in_hand", 0) + 1
        try:
            await send_one(self, fut)
        finally:
            self.cx_in_hand -= 1

    async def flush(self: Any) -> None:
        started = time.monotonic()
        reported = started
        while self.size or getattr(self, "cx_in_hand", 0):
            if self.state != "running" and self.size:
                # as Faust's own flush: nothing will send them any more
                raise RuntimeError("Cannot flush: Producer not Running")
            self.message_sent.clear()
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=1.0)
            except TimeoutError:
                now = time.monotonic()
                if now - reported >= REPORT_EVERY_SECONDS:
                    reported = now
                    log.warning(
                        "producer flush: %d buffered messages (table writes) not sent after "
                        "%.0f s; offsets wait for them",
                        self.size,
                        now - started,
                    )

    # the background task binds ``self._send_pending`` when it starts (after this patch)
    ProducerBuffer._send_pending = send_pending  # type: ignore[method-assign]
    ProducerBuffer.flush = flush  # type: ignore[method-assign]
