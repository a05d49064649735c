"""The compiled Avro codec against fastavro, the reference: same bytes, same values, same errors.

Records are generated at random from each schema (every branch of every union, edge values of
every number type, multi-byte UTF-8, long strings and arrays), so the compiled code is checked
on far more shapes than the events the simulator sends.
"""

from __future__ import annotations

import io
import json
import random
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import pytest

from cxstream.bench.codec import sample_records
from cxstream.errors import DecodeError, ValidationError
from schemas import SchemaCatalog, SchemaVersion, load_catalog
from streams.codec import HEADER_SIZE, AvroCodec, _strip_logical
from streams.registry import EmbeddedRegistry

CATALOG = load_catalog()
_TEXT = ["", "a", "hello world", "王伟", "房贷利率是多少", "emoji 🎉", "x" * 63, "y" * 64,
         "長" * 100, "tab\tand\nnewline"]


def random_value(t: Any, rng: random.Random, names: dict[str, Any], ns: str, depth: int = 0) -> Any:
    """A random valid value of Avro type ``t`` (edges included)."""
    if isinstance(t, str) and t in names:
        t = names[t]
    elif isinstance(t, str) and f"{ns}.{t}" in names:
        t = names[f"{ns}.{t}"]
    if isinstance(t, list):
        branches = [b for b in t if b != "null"] if depth > 3 else t  # stop recursion
        return random_value(rng.choice(branches or t), rng, names, ns, depth + 1)
    kind = t if isinstance(t, str) else t["type"]
    if isinstance(t, dict) and kind in ("record", "enum", "fixed"):
        full = t["name"] if "." in t["name"] else f"{t.get('namespace', ns)}.{t['name']}"
        names.setdefault(full, t)
        names.setdefault(t["name"], t)
        ns = full.rpartition(".")[0]
    if kind == "null":
        return None
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, 1, -1, 63, 64, -65, 8191, 8192, 2**31 - 1, -(2**31),
                           rng.randrange(-(2**31), 2**31)])
    if kind == "long":
        if isinstance(t, dict) and t.get("logicalType") == "timestamp-millis":
            return rng.choice([0, 1, 1_780_000_000_000 + rng.randrange(10**9), 2**40, 2**43])
        return rng.choice([0, -1, 2**63 - 1, -(2**63), 2**14, 2**21 - 1, 2**28, 2**35,
                           rng.randrange(-(2**63), 2**63), rng.randrange(-(2**20), 2**20)])
    if kind == "float":
        return struct.unpack("<f", struct.pack("<f", rng.uniform(-1e6, 1e6)))[0]
    if kind == "double":
        return rng.choice([0.0, -1.5, 1e308, rng.uniform(-1e9, 1e9), float("inf")])
    if kind == "string":
        return rng.choice(_TEXT)
    if kind == "bytes":
        return bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 3, 70])))
    if kind == "fixed":
        return bytes(rng.getrandbits(8) for _ in range(t["size"]))
    if kind == "enum":
        return rng.choice(t["symbols"])
    if kind == "array":
        n = 0 if depth > 3 else rng.choice([0, 1, 3, 70])
        return [random_value(t["items"], rng, names, ns, depth + 1) for _ in range(n)]
    if kind == "map":
        n = 0 if depth > 3 else rng.choice([0, 1, 4])
        return {f"k{i}{rng.choice(_TEXT)}": random_value(t["values"], rng, names, ns, depth + 1)
                for i in range(n)}
    if kind in ("record", "error"):
        return {f["name"]: random_value(f["type"], rng, names, ns, depth + 1)
                for f in t["fields"] if not ("default" in f and rng.random() < 0.2)}
    raise AssertionError(f"no generator for {kind}")


def named_types(t: Any, ns: str, names: dict[str, Any]) -> dict[str, Any]:
    """Every named type of a schema by full and short name (random values refer to them)."""
    if isinstance(t, list):
        for branch in t:
            named_types(branch, ns, names)
    elif isinstance(t, dict):
        if t["type"] in ("record", "enum", "fixed"):
            full = t["name"] if "." in t["name"] else f"{t.get('namespace', ns)}.{t['name']}"
            names[full] = names[t["name"]] = t
            for f in t.get("fields", ()):
                named_types(f["type"], full.rpartition(".")[0], names)
        elif t["type"] == "array":
            named_types(t["items"], ns, names)
        elif t["type"] == "map":
            named_types(t["values"], ns, names)
    return names


def random_records(definition: dict[str, Any], count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    ns = definition.get("namespace", "")
    names = named_types(definition, ns, {})
    return [random_value(definition, rng, names, ns) for _ in range(count)]


def fastavro_bytes(sv: SchemaVersion, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, sv.parsed, record)
    return buf.getvalue()


def fastavro_read(body: bytes, writer: SchemaVersion, reader: SchemaVersion | None = None) -> Any:
    strip = fastavro.parse_schema(_strip_logical(writer.definition))
    rstrip = fastavro.parse_schema(_strip_logical(reader.definition)) if reader else None
    return fastavro.schemaless_reader(io.BytesIO(body), strip, rstrip)


def catalog_of(tmp_path: Path, schemas: dict[str, list[dict[str, Any]]]) -> SchemaCatalog:
    """A catalog on disk with ids 1..n in (name, version) order."""
    lock: dict[str, dict[str, int]] = {}
    next_id = 1
    for name, versions in sorted(schemas.items()):
        folder = tmp_path / "avro" / name
        folder.mkdir(parents=True)
        for v, definition in enumerate(versions, start=1):
            (folder / f"v{v}.avsc").write_text(json.dumps(definition))
            lock.setdefault(name, {})[str(v)] = next_id
            next_id += 1
    (tmp_path / "lock.json").write_text(json.dumps(lock))
    return load_catalog(tmp_path / "avro", tmp_path / "lock.json")


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    return AvroCodec(EmbeddedRegistry(CATALOG))


# --------------------------------------------------------------------------- the repo's schemas


@pytest.mark.parametrize("name", CATALOG.names())
def test_same_bytes_and_values_as_fastavro(codec: AvroCodec, name: str) -> None:
    sv = CATALOG.latest(name)
    assert codec._write_plan(name).compiled
    for record in random_records(sv.definition, 150, seed=hash(name) % 1000):
        data = codec.encode(name, record)
        assert data[:HEADER_SIZE] == b"\x00" + sv.schema_id.to_bytes(4, "big")
        assert data[HEADER_SIZE:] == fastavro_bytes(sv, record), record
        assert codec.encode_unchecked(name, record) == data
        codec.validate(name, record)
        event = codec.decode(data)
        assert (event.name, event.schema_id) == (name, sv.schema_id)
        assert event.record == fastavro_read(data[HEADER_SIZE:], sv)


def test_older_versions_decode_as_the_newest(codec: AvroCodec) -> None:
    evolved = [n for n in CATALOG.names() if len(CATALOG.versions(n)) > 1]
    assert evolved, "the repo has at least one schema with two versions"
    for name in evolved:
        newest = CATALOG.latest(name)
        for old in CATALOG.versions(name)[:-1]:
            for record in random_records(old.definition, 100, seed=old.schema_id):
                body = fastavro_bytes(old, record)
                event = codec.decode(b"\x00" + old.schema_id.to_bytes(4, "big") + body)
                assert event.schema_id == old.schema_id
                assert event.record.keys() == newest.field_names
                assert event.record == fastavro_read(body, old, newest)
        assert codec._read_plans[CATALOG.versions(name)[0].schema_id].compiled


def test_channel_interaction_v1_data_reads_with_v2_defaults(codec: AvroCodec) -> None:
    v1, v2 = CATALOG.versions("channel_interaction")[:2]
    record = {"event_id": "e-1", "occurred_at": 1_780_000_000_000, "customer_id": "C1",
              "channel": "web", "action": "search", "search_query": "房贷"}
    event = codec.decode(b"\x00" + v1.schema_id.to_bytes(4, "big") + fastavro_bytes(v1, record))
    assert event.record["campaign_id"] is None
    assert event.record["locale"] is None
    assert event.record["search_query"] == "房贷"
    assert event.record["source"] == "unknown"
    assert codec.encode("channel_interaction", record)[1:5] == v2.schema_id.to_bytes(4, "big")


def test_simulator_shaped_records_round_trip(codec: AvroCodec) -> None:
    for name, record in sample_records(3000, seed=3):
        event = codec.decode(codec.encode(name, record))
        assert event.record == record, name


# --------------------------------------------------------------------------- every Avro type

ALL_TYPES = {
    "type": "record", "name": "Everything", "namespace": "test.all", "doc": "d",
    "fields": [
        {"name": "b", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "s", "type": "string"},
        {"name": "raw", "type": "bytes"},
        {"name": "fx", "type": {"type": "fixed", "name": "Md5", "size": 16}},
        {"name": "big_enum", "type": {"type": "enum", "name": "Big",
                                      "symbols": [f"S{i}" for i in range(70)]}},
        {"name": "small", "type": {"type": "enum", "name": "Small", "symbols": ["A", "B"]}},
        {"name": "again", "type": "Small"},
        {"name": "fx2", "type": ["null", "test.all.Md5"], "default": None},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "items", "type": {"type": "array", "items": {
            "type": "record", "name": "Inner", "fields": [
                {"name": "id", "type": "string"},
                {"name": "tags", "type": {"type": "map", "values": ["null", "int"]}},
            ]}}},
        {"name": "nested", "type": {"type": "map", "values": {"type": "array",
                                                              "items": "Inner"}}},
        {"name": "wide", "type": ["null", "long", "string", "boolean",
                                  {"type": "fixed", "name": "Two", "size": 2}, "Inner",
                                  {"type": "array", "items": "int"}]},
        {"name": "chain", "type": ["null", {
            "type": "record", "name": "Link", "namespace": "test.other", "fields": [
                {"name": "value", "type": "int"},
                {"name": "next", "type": ["null", "Link"], "default": None},
            ]}], "default": None},
        {"name": "with_default", "type": "string", "default": "dflt"},
        {"name": "bytes_default", "type": "bytes", "default": "\u00ff\u0000"},
    ],
}


def test_every_type_compiles_and_matches_fastavro(tmp_path: Path) -> None:
    catalog = catalog_of(tmp_path, {"everything": [ALL_TYPES]})
    codec = AvroCodec(EmbeddedRegistry(catalog))
    sv = catalog.latest("everything")
    assert codec._write_plan("everything").compiled
    for record in random_records(ALL_TYPES, 300, seed=11):
        data = codec.encode("everything", record)
        if "bytes_default" not in record:  # fastavro cannot write a JSON (str) bytes default
            assert codec.decode(data).record["bytes_default"] == b"\xff\x00"
            record["bytes_default"] = b"\xff\x00"
        assert data[HEADER_SIZE:] == fastavro_bytes(sv, record)
        assert codec.decode(data).record == fastavro_read(data[HEADER_SIZE:], sv)
    assert codec._read_plans[sv.schema_id].compiled


def test_overlapping_unions_fall_back_to_fastavro(tmp_path: Path) -> None:
    schema = {"type": "record", "name": "Loose", "fields": [
        {"name": "n", "type": ["int", "double"]},
        {"name": "t", "type": ["string", {"type": "enum", "name": "E", "symbols": ["x"]}]},
    ]}
    catalog = catalog_of(tmp_path, {"loose": [schema]})
    codec = AvroCodec(EmbeddedRegistry(catalog))
    for record in ({"n": 3, "t": "x"}, {"n": 2.5, "t": "free"}):
        assert codec.decode(codec.encode("loose", record)).record == record
    assert not codec._write_plan("loose").compiled
    with pytest.raises(ValidationError) as info:
        codec.encode("loose", {"n": "3", "t": "x"})
    assert info.value.field == "n"


def test_type_promotion_resolves_through_fastavro(tmp_path: Path) -> None:
    v1 = {"type": "record", "name": "P", "fields": [{"name": "n", "type": "int"}]}
    v2 = {"type": "record", "name": "P", "fields": [
        {"name": "n", "type": "long"},
        {"name": "extra", "type": {"type": "array", "items": "string"}, "default": []}]}
    catalog = catalog_of(tmp_path, {"p": [v1, v2]})
    codec = AvroCodec(EmbeddedRegistry(catalog))
    old = catalog.versions("p")[0]
    first = codec.decode(b"\x00" + old.schema_id.to_bytes(4, "big") + fastavro_bytes(old, {"n": 7}))
    assert first.record == {"n": 7, "extra": []}
    assert not codec._read_plans[old.schema_id].compiled


def test_added_mutable_defaults_are_not_shared(tmp_path: Path) -> None:
    v1 = {"type": "record", "name": "M", "fields": [{"name": "a", "type": "string"}]}
    v2 = {"type": "record", "name": "M", "fields": [
        {"name": "a", "type": "string"},
        {"name": "tags", "type": {"type": "map", "values": "long"}, "default": {}}]}
    catalog = catalog_of(tmp_path, {"m": [v1, v2]})
    codec = AvroCodec(EmbeddedRegistry(catalog))
    old = catalog.versions("m")[0]
    data = b"\x00" + old.schema_id.to_bytes(4, "big") + fastavro_bytes(old, {"a": "x"})
    first, second = codec.decode(data).record, codec.decode(data).record
    first["tags"]["n"] = 1
    assert second["tags"] == {}
    assert codec._read_plans[old.schema_id].compiled


# --------------------------------------------------------------------------- timestamps


def test_timestamps_are_int_millis_and_datetimes_are_accepted(codec: AvroCodec) -> None:
    millis = 1_780_000_123_456
    aware = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=millis)
    base = {"event_id": "e", "customer_id": "C1", "channel": "app", "action": "page_view"}
    as_int = codec.encode("channel_interaction", {**base, "occurred_at": millis})
    assert codec.encode("channel_interaction", {**base, "occurred_at": aware}) == as_int
    naive = aware.replace(tzinfo=None)  # naive means UTC, as in fastavro
    assert codec.encode("channel_interaction", {**base, "occurred_at": naive}) == as_int
    occurred = codec.decode(as_int).record["occurred_at"]
    assert occurred == millis
    assert type(occurred) is int
    # other Avro readers see the logical type and get a datetime
    sv = CATALOG.latest("channel_interaction")
    assert fastavro.schemaless_reader(io.BytesIO(as_int[5:]), sv.parsed)["occurred_at"] == aware


# --------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def framed(codec: AvroCodec) -> bytes:
    """A transaction with a merchant, so its body holds strings, enums, longs and a union."""
    record = next(r for n, r in sample_records(200, seed=5) if n == "transaction" and r["merchant"])
    return codec.encode("transaction", record)


def reason(codec: AvroCodec, data: Any) -> str:
    with pytest.raises(DecodeError) as info:
        codec.decode(data)
    return info.value.reason


def test_short_messages_are_truncated(codec: AvroCodec, framed: bytes) -> None:
    for cut in range(HEADER_SIZE):
        assert reason(codec, framed[:cut]) == "truncated"
    assert reason(codec, None) == "truncated"


def test_every_cut_of_the_body_is_detected(codec: AvroCodec, framed: bytes) -> None:
    for cut in range(HEADER_SIZE, len(framed)):
        assert reason(codec, framed[:cut]) in ("truncated", "bad_body"), cut


def test_trailing_bytes_are_bad_body(codec: AvroCodec, framed: bytes) -> None:
    assert reason(codec, framed + b"\x00") == "bad_body"


def test_magic_unknown_id_and_size(framed: bytes) -> None:
    codec = AvroCodec(EmbeddedRegistry(CATALOG), max_event_bytes=len(framed))
    assert reason(codec, b"\x01" + framed[1:]) == "bad_magic"
    assert reason(codec, b"\x00\x00\x00\x99\x99" + framed[5:]) == "unknown_schema_id"
    assert reason(codec, framed + b"\x00") == "oversized"
    with pytest.raises(ValidationError, match="limit"):
        codec.encode("transaction", {**codec.decode(framed).record, "merchant": "m" * 300})


def test_corrupt_indexes_and_lengths_are_bad_body(codec: AvroCodec) -> None:
    sv = CATALOG.latest("consent_changed")
    head = b"\x00" + sv.schema_id.to_bytes(4, "big")
    good = {"event_id": "e", "occurred_at": 5, "customer_id": "C", "consent": "marketing",
            "granted": True}
    body = fastavro_bytes(sv, good)
    assert codec.decode(head + body).record["consent"] == "marketing"
    # body: 02 'e' | 0a (occurred_at 5) | 02 'C' | consent index | granted | channel | source
    assert body[5] == 2
    assert body[6] == 1
    assert reason(codec, head + body[:5] + b"\x7e" + body[6:]) == "bad_body"  # index 63 of 4
    assert reason(codec, head + body[:6] + b"\x07" + body[7:]) == "bad_body"  # boolean 7
    assert reason(codec, head + b"\x03" + body[1:]) == "bad_body"  # negative string length


def test_random_corruption_only_raises_decode_error(codec: AvroCodec) -> None:
    rng = random.Random(99)
    messages = [codec.encode(n, r) for n, r in sample_records(200, seed=8)]
    for _ in range(3000):
        data = bytearray(rng.choice(messages))
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(HEADER_SIZE, len(data))] = rng.getrandbits(8)
        reasons = []
        try:
            codec.decode(bytes(data))
        except DecodeError as exc:
            reasons.append(exc.reason)
        assert set(reasons) <= {"truncated", "bad_body", "unknown_schema_id"}


def test_bytearray_and_memoryview_decode(codec: AvroCodec, framed: bytes) -> None:
    expected = codec.decode(framed)
    assert codec.decode(bytearray(framed)) == expected
    assert codec.decode(memoryview(framed)) == expected


def test_a_record_containing_itself_is_a_validation_error(tmp_path: Path) -> None:
    schema = {"type": "record", "name": "Node", "fields": [
        {"name": "next", "type": ["null", "Node"], "default": None}]}
    codec = AvroCodec(EmbeddedRegistry(catalog_of(tmp_path, {"node": [schema]})))
    assert codec.decode(codec.encode("node", {"next": {"next": None}})).record == {
        "next": {"next": None}}
    loop: dict[str, Any] = {}
    loop["next"] = loop
    with pytest.raises(ValidationError, match="nests too deeply"):
        codec.encode("node", loop)


# --------------------------------------------------------------------------- columns


def columns_of(codec: AvroCodec, messages: list[bytes]) -> list[list[Any]]:
    return codec.columns_plan(messages[0][:HEADER_SIZE]).read(messages)


def test_columns_hold_the_decoded_values_in_reader_field_order(codec: AvroCodec) -> None:
    for name in CATALOG.names():
        newest = CATALOG.latest(name)
        for sv in CATALOG.versions(name):
            header = b"\x00" + sv.schema_id.to_bytes(4, "big")
            records = random_records(sv.definition, 60, seed=sv.schema_id + 7)
            messages = [header + fastavro_bytes(sv, record) for record in records]
            plan = codec.columns_plan(header)
            assert (plan.name, plan.schema_id) == (name, sv.schema_id)
            assert plan.fields == tuple(f["name"] for f in newest.definition["fields"])
            decoded = [codec.decode(m).record for m in messages]
            expected = [[record[f] for record in decoded] for f in plan.fields]
            assert plan.read(messages) == expected
            assert plan.read([]) == [[] for _ in plan.fields]


def test_columns_through_fastavro_and_with_mutable_defaults(tmp_path: Path) -> None:
    v1 = {"type": "record", "name": "P", "fields": [{"name": "n", "type": "int"}]}
    v2 = {"type": "record", "name": "P", "fields": [
        {"name": "n", "type": "long"},  # a promotion: fastavro resolves it
        {"name": "extra", "type": {"type": "array", "items": "string"}, "default": []}]}
    m1 = {"type": "record", "name": "M", "fields": [{"name": "a", "type": "string"}]}
    m2 = {"type": "record", "name": "M", "fields": [
        {"name": "a", "type": "string"},
        {"name": "tags", "type": {"type": "map", "values": "long"}, "default": {}}]}
    catalog = catalog_of(tmp_path, {"p": [v1, v2], "m": [m1, m2]})
    codec = AvroCodec(EmbeddedRegistry(catalog))
    old_p, old_m = catalog.versions("p")[0], catalog.versions("m")[0]
    p_head = b"\x00" + old_p.schema_id.to_bytes(4, "big")
    p_data = [p_head + fastavro_bytes(old_p, {"n": n}) for n in (7, -3)]
    assert columns_of(codec, p_data) == [[7, -3], [[], []]]
    assert not codec._read_plans[old_p.schema_id].compiled
    m_head = b"\x00" + old_m.schema_id.to_bytes(4, "big")
    m_data = [m_head + fastavro_bytes(old_m, {"a": a}) for a in ("x", "y")]
    a_values, tags = columns_of(codec, m_data)
    assert (a_values, tags) == (["x", "y"], [{}, {}])
    tags[0]["n"] = 1
    assert tags[1] == {}


def test_columns_plans_refuse_bad_headers_and_reads_raise_on_bad_bodies(
    codec: AvroCodec, framed: bytes
) -> None:
    for header, why in [(b"\x00\x00", "truncated"), (b"\x01" + framed[1:5], "bad_magic"),
                        (b"\x00\x00\x00\x99\x99", "unknown_schema_id")]:
        with pytest.raises(DecodeError) as info:
            codec.columns_plan(header)
        assert info.value.reason == why
    read = codec.columns_plan(framed[:HEADER_SIZE]).read
    for cut in range(HEADER_SIZE, len(framed)):
        with pytest.raises(Exception):  # noqa: B017, PT011 - the compiled reader's raw error
            read([framed, framed[:cut], framed])
    with pytest.raises(Exception):  # noqa: B017, PT011
        read([framed, framed + b"\x00"])
