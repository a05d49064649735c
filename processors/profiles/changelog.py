"""Profile table writes sent to the table's changelog through librdkafka, awaited per batch.

Faust's own path for one table write (``Table.__setitem__`` -> ``send_changelog`` -> a
``FutureMessage`` through its producer buffer into aiokafka) cost ~20 us of Python per changed
customer, a fifth of the worker's CPU (py-spy, ``cxstream bench profiles``); librdkafka queues a
message in ~1 us. So the processor puts each changed state into the table's *store* directly
(what Faust's write does besides the changelog send) and sends the changelog message itself,
key and value as raw bytes to the source partition: the same message Faust would send, so
Faust's recovery and standbys read it unchanged. Only this writer writes these changelog
topics, so their order per partition is the order of the writes.

:class:`DirectJsonTable` does the same for the small JSON tables written once per batch (dedupe
blocks, pending publication blocks): through Faust, each of those writes was a produce request
of its own at live rates (~2,400 small writes a second at 10k events/s).

Durability: Faust flushes its producer before every offset commit (``Consumer.
_commit_offsets``); :meth:`ChangelogWriter.hook_into` makes that flush also :meth:`drain` this
writer, so a batch's state writes are acknowledged before its offsets can be committed, exactly
as with Faust's own table writes, without a handler waiting per batch (waiting per batch made
small live batches wait-bound: produce -> Redis p99 5.9 s at 3k events/s, measured). A failed
send raises ``ServiceError`` at the next batch or flush (the worker stops; uncommitted batches
are read again after the restart). On a rebalance :meth:`flush` waits for every send, so a
partition's new owner recovers all of them. :meth:`wait` waits for given batches only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from cxstream.errors import ServiceError
from cxstream.settings import Settings
from streams.kafka_config import confluent_config
from streams.producer import producer_tuning

#: how long a waiting handler sleeps between polls of delivery reports
_POLL_SECONDS = 0.001


class Sends:
    """The outstanding changelog sends of one batch."""

    __slots__ = ("error", "remaining", "topic", "writer")

    def __init__(self, topic: str, writer: ChangelogWriter | None = None) -> None:
        self.topic = topic
        self.remaining = 0
        self.error: KafkaError | None = None
        #: the writer also learns of a failure (checked by ``raise_failed`` and ``drain``)
        self.writer = writer

    def report(self, err: KafkaError | None, msg: Message) -> None:
        self.remaining -= 1
        if err is not None:
            if self.error is None:
                self.error = err
            if self.writer is not None and self.writer.error is None:
                self.writer.error = f"{self.topic}: {err}"


class ChangelogWriter:
    """Sends table changelog messages with librdkafka (module doc)."""

    def __init__(self, settings: Settings, *, linger_ms: float | None = None) -> None:
        # the SDK's linger (5 ms): nothing waits for these acks but an offset commit, and
        # drain()'s flush sends what lingers at once. 1 ms made a produce request every
        # millisecond per partition at live rates, which the broker handles on these shared cores
        conf = confluent_config(settings) | producer_tuning(settings)
        if linger_ms is not None:
            conf["linger.ms"] = linger_ms
        try:
            self._producer = Producer(conf)
        except KafkaException as exc:
            raise ServiceError(f"profiles changelog: creating the producer failed: {exc}") from exc
        self.sent = 0
        #: the first failed write of a batch created with this writer
        self.error: str | None = None

    def hook_into(self, faust_producer: Any) -> None:
        """Make ``faust_producer.flush()`` (run before every offset commit) drain this writer."""
        faust_flush = faust_producer.flush

        async def flush() -> None:
            await faust_flush()
            await self.drain()

        faust_producer.flush = flush

    def raise_failed(self) -> None:
        if self.error is not None:
            raise ServiceError(f"profiles changelog: a write failed: {self.error}")

    async def drain(self) -> None:
        """Until every queued message is acknowledged; raises if one failed."""
        producer = self._producer
        while True:
            pending = producer.flush(0)  # sends what lingers, serves reports
            self.raise_failed()
            if not pending:
                return
            await asyncio.sleep(_POLL_SECONDS)

    def send(
        self, sends: Sends, partition: int, items: Sequence[tuple[bytes, bytes | None]]
    ) -> None:
        """Queue ``(key, value)`` messages (``None``: a tombstone) for ``partition``."""
        produce = self._producer.produce
        topic, report = sends.topic, sends.report
        for key, value in items:
            while True:
                try:
                    produce(topic, value, key, partition, on_delivery=report)
                    break
                except BufferError:
                    self._producer.poll(0.05)  # local queue full: serve reports, then retry
                except KafkaException as exc:
                    raise ServiceError(
                        f"profiles changelog: producing to {topic}[{partition}]: {exc}"
                    ) from exc
            sends.remaining += 1
        self.sent += len(items)

    async def wait(self, *batches: Sends) -> None:
        """Until every message of ``batches`` is acknowledged; raises if one failed."""
        poll = self._producer.poll
        while True:
            poll(0)
            for sends in batches:
                if sends.error is not None:
                    raise ServiceError(
                        f"profiles changelog: a write to {sends.topic} failed: {sends.error}"
                    )
            if all(sends.remaining <= 0 for sends in batches):
                return
            await asyncio.sleep(_POLL_SECONDS)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for every queued message (rebalance, shutdown)."""
        pending = self._producer.flush(timeout)
        self.raise_failed()
        if pending:
            raise ServiceError(f"profiles changelog: {pending} writes unacknowledged after flush")

    def stats(self) -> dict[str, Any]:
        return {"sent": self.sent, "queued": len(self._producer)}


class DirectJsonTable:
    """The table interface :class:`streams.batching.SeenEvents` and the publisher use, over a
    Faust table with JSON keys and values, written as :class:`ChangelogWriter` writes.

    A write goes to the table's store (what ``Table.__setitem__`` does besides the changelog
    send) and, JSON-encoded as Faust's ``json`` serializer reads it back on recovery, to the
    changelog partition of Faust's current event (:func:`streams.batching.acting_for`), like a
    Faust table write. Reads, ``on_recover`` and recovery itself stay Faust's.
    """

    def __init__(self, table: Any, writer: ChangelogWriter) -> None:
        self.table = table
        self.writer = writer
        self._sends = Sends(table.changelog_topic.get_topic_name(), writer)

    def on_recover(self, callback: Any) -> None:
        self.table.on_recover(callback)

    def __contains__(self, key: object) -> bool:
        return key in self.table.data

    def __getitem__(self, key: Any) -> Any:
        return self.table.data[key]

    def items(self) -> Any:
        return self.table.items()

    def __setitem__(self, key: Any, value: Any) -> None:
        self.table.data[key] = value
        self._send(key, orjson.dumps(value))

    def __delitem__(self, key: Any) -> None:
        del self.table.data[key]  # KeyError for an unknown key, as the Faust table raises
        self._send(key, None)

    def _send(self, key: Any, value: bytes | None) -> None:
        from faust.streams import current_event

        event = current_event()
        if event is None:
            raise ServiceError(
                f"{self._sends.topic}: table write outside a source event (use acting_for)"
            )
        self.writer.send(self._sends, event.message.partition, [(orjson.dumps(key), value)])
