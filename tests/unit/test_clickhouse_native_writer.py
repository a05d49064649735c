"""The fast block writer (sinks/clickhouse/native.py) puts the same bytes on the wire as
clickhouse-driver's own column writers, never mutates the caller's columns, and leaves what it
cannot handle to the driver. No server: the driver's writers run against an in-memory socket."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from clickhouse_driver import Client
from clickhouse_driver.block import ColumnOrientedBlock
from clickhouse_driver.bufferedwriter import BufferedSocketWriter
from clickhouse_driver.columns.service import write_column
from clickhouse_driver.streams.native import BlockOutputStream

from sinks.clickhouse.native import FastBlockOutputStream, column_encoder, install


class _Socket:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.parts.append(bytes(data))


def _context() -> Any:
    client = Client("127.0.0.1", settings={"strings_encoding": "utf-8"})  # never connects
    context = client.connection.context
    # what a connected 18.16 server reports (revision 54413): block info, no custom serialisation
    context.server_info = SimpleNamespace(
        used_revision=54413, timezone="UTC", get_timezone=lambda: "UTC"
    )
    return context


def _driver_bytes(spec: str, items: list[Any]) -> bytes:
    sock = _Socket()
    writer = BufferedSocketWriter(sock, 1 << 16)
    write_column(_context(), "c", spec, list(items), writer)
    writer.flush()
    return b"".join(sock.parts)


CASES: list[tuple[str, list[Any]]] = [
    ("DateTime('UTC')", [0, 1, 1_700_000_000, 2**32 - 1]),
    ("DateTime", [5, 6]),
    ("String", ["cx.channel_interaction"] * 7),
    ("String", ["a", "bé", ""]),
    ("String", [("web", "分行", "")[i % 3] for i in range(1000)]),  # few distinct: a table
    ("String", [f"v{i % 40}" for i in range(300)]),  # too many in the sample: the driver
    ("String", [f"v{i % 5}" for i in range(300)] + [f"w{i}" for i in range(2000)]),
    ("Nullable(String)", [None, "x", "é" * 200, None]),
    ("Nullable(String)", [None, None, None]),
    ("Nullable(String)", ["same", "same"]),
    ("Nullable(String)", ["a", "b"]),
    ("Nullable(String)", [(None, "zh-CN", "en")[i % 3] for i in range(500)]),
    ("Nullable(Int64)", [None, 1, -5, 2**62]),
    ("Nullable(Int32)", [1, 2, 3]),
    ("Nullable(UInt8)", [True, False, None]),
    ("Nullable(UInt16)", [None, 65535]),
    ("Nullable(Float64)", [None, 1.5, -2.25]),
    ("Nullable(Float32)", [0.5]),
    ("Nullable(DateTime('UTC'))", [None, 1_700_000_000]),
]


@pytest.mark.parametrize(("spec", "items"), CASES)
def test_fast_encoder_writes_the_drivers_bytes(spec: str, items: list[Any]) -> None:
    encoder = column_encoder(spec, "utf-8")
    assert encoder is not None
    before = list(items)
    data = encoder(items)
    assert items == before  # the caller's column is untouched (a retry resends it)
    if data is not None:
        assert data == _driver_bytes(spec, items)


@pytest.mark.parametrize(
    ("spec", "items"),
    [
        ("DateTime('UTC')", [2**32]),  # out of range: the driver raises its own error
        ("DateTime('UTC')", [-1]),
        ("Nullable(Int32)", [None, 2**40]),
        ("Nullable(UInt8)", [-1]),
        ("Nullable(String)", [None, 5]),  # not a string
        ("String", ["a", 5, "a", "b"] * 10),
        ("String", ["a", b"a"] * 10),
        ("String", [["a"], ["b"]]),
    ],
)
def test_values_the_fast_path_cannot_pack_are_left_to_the_driver(
    spec: str, items: list[Any]
) -> None:
    encoder = column_encoder(spec, "utf-8")
    assert encoder is not None
    assert encoder(items) is None


@pytest.mark.parametrize(
    "spec",
    ["LowCardinality(String)", "Array(String)", "UInt64", "LowCardinality(Nullable(String))"],
)
def test_other_types_keep_the_drivers_writer(spec: str) -> None:
    assert column_encoder(spec, "utf-8") is None


def test_whole_block_is_byte_identical_to_the_drivers() -> None:
    columns = [
        ("event_id", "String"),
        ("occurred_at", "DateTime('UTC')"),
        ("customer_id", "Nullable(String)"),
        ("channel", "LowCardinality(String)"),
        ("duration_ms", "Nullable(Int64)"),
        ("search_query", "Nullable(String)"),
        ("tags", "Array(String)"),
        ("kafka_topic", "String"),
        ("kafka_offset", "UInt64"),
    ]
    n = 1000
    data = [
        [f"id-{i}" for i in range(n)],
        [1_700_000_000 + i for i in range(n)],
        [None if i % 3 else f"c{i}" for i in range(n)],
        [("web", "app", "branch")[i % 3] for i in range(n)],
        [None if i % 2 else i * 10 for i in range(n)],
        [None] * n,
        [["a", "b"][: i % 3] for i in range(n)],
        ["cx.channel_interaction"] * n,
        list(range(n)),
    ]
    out = {}
    for cls in (BlockOutputStream, FastBlockOutputStream):
        sock = _Socket()
        writer = BufferedSocketWriter(sock, 1 << 16)
        block = ColumnOrientedBlock(columns, [list(c) for c in data])
        cls(writer, _context()).write(block)
        out[cls.__name__] = b"".join(sock.parts)
    assert out["FastBlockOutputStream"] == out["BlockOutputStream"]


def test_install_replaces_the_block_writer_of_the_clients_connection() -> None:
    client = Client("127.0.0.1", settings={"strings_encoding": "utf-8"})
    install(client)
    connection = client.connection
    connection.fout = BufferedSocketWriter(_Socket(), 1024)
    assert isinstance(connection.get_block_out_stream(), FastBlockOutputStream)
