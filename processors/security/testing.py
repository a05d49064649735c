"""Run the detectors without a broker (unit tests, benchmark, tuning).

:class:`MemoryPipeline` feeds access-event records through :class:`SecurityEngine` with plain
dicts as tables, partitioning by principal the way Kafka would (a stable hash of the key) and
re-keying failed logins onto in-memory "network" partitions, like the worker does over Kafka.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from cxstream.settings import Settings
from processors.security.engine import SecurityEngine
from processors.security.state import StateStore
from streams.batching import InputEvent


class MemoryPipeline:
    def __init__(self, settings: Settings, *, partitions: int | None = None) -> None:
        self.partitions = partitions or settings.kafka.partitions
        self.tables: dict[str, dict[str, Any]] = {
            "principals": {}, "networks": {}, "models": {}, "erased": {},
        }  # fmt: skip
        self.engine = self.new_engine(settings)
        self.settings = settings
        self.flags: list[dict[str, Any]] = []
        self._offsets = [0] * self.partitions
        self._net_offsets = [0] * self.partitions
        self._erasure_offsets = [0] * self.partitions

    def new_engine(self, settings: Settings) -> SecurityEngine:
        """An engine over this pipeline's tables (a "restarted worker" when called again)."""
        return SecurityEngine(
            settings,
            StateStore(self.tables["principals"], faust_tables=False),
            StateStore(self.tables["networks"], faust_tables=False),
            StateStore(self.tables["models"], faust_tables=False),
            StateStore(self.tables["erased"], faust_tables=False),
            partition_of=self.partition,
        )

    def partition(self, key: str) -> int:
        return zlib.crc32(key.encode()) % self.partitions

    def events(self, records: Iterable[Mapping[str, Any]]) -> list[InputEvent]:
        """Records as input events with partitions and (increasing) offsets."""
        out = []
        for record in records:
            p = self.partition(record["principal_id"])
            out.append(self._event(dict(record), p, self._offsets[p], None))
            self._offsets[p] += 1
        return out

    def run(self, events: list[InputEvent], batch_size: int = 500) -> list[dict[str, Any]]:
        """Apply ``events`` (in batches per partition) and return the flags they raised."""
        raised: list[dict[str, Any]] = []
        for start in range(0, len(events), batch_size):
            chunk = events[start : start + batch_size]
            by_partition: dict[int, list[InputEvent]] = {}
            for item in chunk:
                by_partition.setdefault(item.partition, []).append(item)
            for items in by_partition.values():
                outcome = self.engine.on_access(items)
                raised.extend(outcome.flags)
                forwarded = []
                for key, item in outcome.forwards:
                    p = self.partition(key)
                    forwarded.append(
                        self._event(item.record, p, self._net_offsets[p], key.encode())
                    )
                    self._net_offsets[p] += 1
                net: dict[int, list[InputEvent]] = {}
                for item in forwarded:
                    net.setdefault(item.partition, []).append(item)
                for items_net in net.values():
                    raised.extend(self.engine.on_network(items_net).flags)
        self.flags.extend(raised)
        return raised

    def erase(self, requests: Iterable[Mapping[str, Any]]) -> int:
        """Apply ``erasure_requested`` records like the worker: on the customer's partition,
        then re-sent to every partition. Returns the number of entries changed."""
        changed = 0
        for record in requests:
            p = self.partition(record["customer_id"])
            item = self._event(dict(record), p, self._erasure_offsets[p], None, "erasure_requested")
            self._erasure_offsets[p] += 1
            changed += self.engine.on_erasure([item])
            for q in range(self.partitions):
                copy = self._event(dict(record), q, 0, None, "erasure_requested")
                changed += self.engine.on_erasure_broadcast([copy])
        return changed

    @staticmethod
    def _event(
        record: dict[str, Any],
        partition: int,
        offset: int,
        key: bytes | None,
        name: str = "access_event",
    ) -> InputEvent:
        return InputEvent(
            name, record, 0, key, "memory", partition, offset,
            record["occurred_at"], None,
        )  # fmt: skip
