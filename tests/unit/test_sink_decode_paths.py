"""The sink's two ways of turning a batch into columns agree.

The fast path reads whole batches as rows (``AvroCodec.row_plan``: tuples transposed into
field columns); the message-by-message path decodes dicts and words every error. Both must give
the same columns, byte for byte, for every table, every writer version and every mix.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import fastavro
import pytest
from confluent_kafka import Message

from cxstream.settings import Settings
from schemas import load_catalog
from sinks.clickhouse.backend import make_backend
from sinks.clickhouse.sink import ClickHouseSink, _Batch
from sinks.clickhouse.testing import sample_events, shared_chdb_path
from tests.unit.test_clickhouse_contract import messages, with_database

CATALOG = load_catalog()


@pytest.fixture(scope="module")
def sink() -> Iterator[ClickHouseSink]:
    base = Settings()
    settings = with_database(
        base.model_copy(
            update={
                "clickhouse": base.clickhouse.model_copy(
                    update={"host": None, "chdb_path": shared_chdb_path()}
                )
            }
        ),
        "t_decode_paths",
    )
    backend = make_backend(settings)  # never queried: only the batch building runs
    try:
        yield ClickHouseSink(settings, backend)
    finally:
        backend.close()


def built(sink: ClickHouseSink, batch_messages: list[Message], *, rows: bool) -> _Batch:
    batch = _Batch()
    batch.add(batch_messages)
    if rows:
        sink._build(batch)
    else:
        fast = sink._decode_all
        sink._decode_all = lambda *args: None  # type: ignore[method-assign]
        try:
            sink._build(batch)
        finally:
            sink._decode_all = fast  # type: ignore[method-assign]
    return batch


def columns(batch: _Batch) -> dict[str, dict[str, list[Any]]]:
    """Every table's columns, but ``ingest_time``: each build reads the clock (two builds may
    fall in different seconds), so it is checked to be one second for the batch instead."""
    assert batch.tables is not None
    out = {}
    for name, table in batch.tables.items():
        data = dict(zip(table.columns, table.data, strict=True))
        assert len(set(data.pop("ingest_time"))) <= 1
        out[name] = data
    return out


def test_every_table_gets_the_same_columns_both_ways(sink: ClickHouseSink) -> None:
    names = sorted(sink.rows.tables.keys() & set(CATALOG.names()))
    events = sample_events(1500, seed=41, names=names)
    batch_messages = messages(sink.settings, events)
    assert sink._decode_all(batch_messages, *coordinates(batch_messages)) is not None
    fast, slow = built(sink, batch_messages, rows=True), built(sink, batch_messages, rows=False)
    assert columns(fast) == columns(slow)
    assert sum(len(t) for t in (fast.tables or {}).values()) == len(events)
    assert not fast.dead


def test_older_writer_versions_mixed_in_read_as_the_newest(sink: ClickHouseSink) -> None:
    old, new = CATALOG.versions("channel_interaction")[:2]
    events = sample_events(400, seed=42, names=["channel_interaction"])
    batch_messages = messages(sink.settings, events)
    for i in range(0, len(batch_messages), 3):  # every third one written with v1
        record = {k: v for k, v in events[i][1].items() if k in old.field_names}
        body = io.BytesIO()
        fastavro.schemaless_writer(body, old.parsed, record)
        framed = b"\x00" + old.schema_id.to_bytes(4, "big") + body.getvalue()
        m = batch_messages[i]
        batch_messages[i] = Message(
            topic=m.topic(), partition=0, offset=m.offset(), value=framed, timestamp=m.timestamp()
        )
    fast, slow = built(sink, batch_messages, rows=True), built(sink, batch_messages, rows=False)
    assert columns(fast) == columns(slow)
    table = columns(fast)["channel_interaction"]
    assert table["schema_id"][:3] == [old.schema_id, new.schema_id, new.schema_id]
    assert table["locale"][0] is None  # v2's default for a v1 event
    assert events[0][1]["locale"] is not None or events[0][1]["campaign_id"] is not None


def test_a_bad_message_sends_the_batch_the_slow_way(sink: ClickHouseSink) -> None:
    events = sample_events(50, seed=43, names=["transaction", "channel_interaction"])
    batch_messages = messages(sink.settings, events)
    good = batch_messages[10].value()
    assert good is not None
    batch_messages[10] = Message(
        topic=batch_messages[10].topic(), partition=0, offset=10, value=good[:-3]
    )
    assert sink._decode_all(batch_messages, *coordinates(batch_messages)) is None
    batch = built(sink, batch_messages, rows=True)
    assert [d.reason for d in batch.dead] in (["truncated"], ["bad_body"])
    assert sum(len(t) for t in (batch.tables or {}).values()) == len(events) - 1


def coordinates(batch_messages: list[Message]) -> tuple[list[str], list[int], list[int]]:
    return (
        [m.topic() or "" for m in batch_messages],
        [m.partition() or 0 for m in batch_messages],
        [m.offset() or 0 for m in batch_messages],
    )
