"""Helpers for tests and benchmarks of the ClickHouse sink (no services, no mocks).

:func:`sample_record` builds a valid, plausible record of any event type straight from its Avro
schema (so it covers the output topics the simulator does not produce, and new fields without
code changes); :func:`sample_events` builds a seeded mix of them.

>>> import random
>>> from schemas import load_catalog
>>> record = sample_record(load_catalog().latest("survey_response"), random.Random(1), t_ms=0)
>>> 0 <= record["score"] <= 100 and record["dimension"] in {
...     "information_access", "feedback_handling", "personalisation", "security", "overall"}
True
"""

from __future__ import annotations

import atexit
import random
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from schemas import SchemaCatalog, SchemaVersion, load_catalog

_WORDS = ("card", "blocked", "transfer", "late", "fee", "app", "crash", "thanks", "branch", "wait")


@lru_cache(maxsize=1)
def shared_chdb_path() -> Path:
    """One temporary chdb store per process (chdb can open a single data path per process),
    removed when the process exits."""
    path = Path(tempfile.mkdtemp(prefix="cxstream-chdb-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _value(
    name: str, avro_type: Any, rng: random.Random, t_ms: int, customers: Sequence[str], pii: str
) -> Any:
    if isinstance(avro_type, list):  # nullable union: null about a fifth of the time
        branches = [t for t in avro_type if t != "null"]
        if "null" in avro_type and rng.random() < 0.2:
            return None
        return _value(name, branches[0], rng, t_ms, customers, pii)
    if isinstance(avro_type, dict):
        kind = avro_type.get("type")
        if avro_type.get("logicalType") == "timestamp-millis":
            return t_ms if name == "occurred_at" else t_ms - rng.randrange(0, 86_400_000)
        if kind == "enum":
            return rng.choice(avro_type["symbols"])
        if kind == "map":
            keys = rng.sample(["web", "app", "chat", "phone", "branch"], rng.randrange(0, 4))
            return {k: _value(k, avro_type["values"], rng, t_ms, customers, "") for k in keys}
        if kind == "array":
            return [
                _value(name, avro_type["items"], rng, t_ms, customers, "")
                for _ in range(rng.randrange(0, 4))
            ]
        if kind == "record":
            return {
                f["name"]: _value(f["name"], f["type"], rng, t_ms, customers, "")
                for f in avro_type["fields"]
            }
        return _value(name, kind, rng, t_ms, customers, pii)
    if avro_type == "string":
        return _string(name, rng, customers, pii)
    if avro_type == "int":
        if name == "score":
            return rng.randrange(0, 101)
        if name == "birth_year":
            return rng.randrange(1940, 2006)
        return rng.randrange(0, 50)
    if avro_type == "long":
        return rng.randrange(-500_000, 5_000_000) if "amount" in name else rng.randrange(0, 10_000)
    if avro_type in {"double", "float"}:
        return rng.random()
    if avro_type == "boolean":
        return rng.random() < 0.5
    if avro_type == "bytes":
        return rng.randbytes(8)
    raise ValueError(f"no sample value for Avro type {avro_type!r} of field {name}")


def _string(name: str, rng: random.Random, customers: Sequence[str], pii: str) -> str:
    if name == "event_id":
        return _uuid(rng)
    if name in {"customer_id", "principal_id"} and customers:
        return rng.choice(customers)
    if pii == "free_text":
        return " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(3, 12)))
    if pii == "email":
        return f"user{rng.randrange(10_000)}@example.com"
    if pii == "phone":
        return f"+86 138 {rng.randrange(10_000_000):07d}"
    if pii == "ip":
        return ".".join(str(rng.randrange(1, 255)) for _ in range(4))
    if pii:
        return f"{pii}-{rng.randrange(1_000_000)}"
    if name.endswith("_id"):
        return f"{name[:-3]}-{rng.randrange(100_000)}"
    return rng.choice(("alpha", "beta", "gamma", "delta"))


def sample_record(
    sv: SchemaVersion, rng: random.Random, *, t_ms: int, customers: Sequence[str] = ()
) -> dict[str, Any]:
    """A complete record of ``sv`` (every field present, as the codec decodes it)."""
    record = {
        f["name"]: _value(f["name"], f["type"], rng, t_ms, customers, str(f.get("pii", "")))
        for f in sv.definition["fields"]
    }
    keys = [k for k in sv.partition_key if k in record]
    if keys and all(record[k] is None for k in keys):  # a producer needs a key
        record[keys[0]] = _string(keys[0], rng, customers, "")
    return record


def sample_events(
    n: int,
    *,
    seed: int = 0,
    start_ms: int = 1_767_225_600_000,  # 2026-01-01T00:00:00Z
    span_ms: int = 86_400_000,
    names: Sequence[str] | None = None,
    customers: int = 200,
    catalog: SchemaCatalog | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """``n`` seeded ``(event type, record)`` pairs spread over ``span_ms`` from ``start_ms``."""
    catalog = catalog or load_catalog()
    rng = random.Random(seed)
    pool = [f"cust-{i:05d}" for i in range(customers)]
    kinds = list(names or catalog.names())
    events = []
    for _ in range(n):
        name = rng.choice(kinds)
        t_ms = start_ms + rng.randrange(span_ms)
        events.append((name, sample_record(catalog.latest(name), rng, t_ms=t_ms, customers=pool)))
    return events
