"""``cxstream bench codec``: the Avro codec's rates on a realistic mix of the 12 input events.

Figures (events/s on one core, best of ``rounds`` passes over the same records):

- ``encode_validate``: ``AvroCodec.encode`` (check every field + write + frame), what producers
  pay per event; target >= 150k/s;
- ``validate_only``: ``AvroCodec.validate``; ``encode_only``: ``AvroCodec.encode_unchecked``;
- ``decode``: ``AvroCodec.decode`` (frame + read + resolve to the newest version); target >= 200k/s;
- ``decode_resolving``: decode of events written with an older version of a schema (only when
  some input schema has several versions: ``channel_interaction`` v1 read as v2);
- ``fastavro_*``: fastavro's ``schemaless_writer`` / ``validate`` / ``schemaless_reader`` on the
  same records, the library reference measured in the same run;
- ``bytes_per_event`` and per-type rates (``by_type``).

Options: ``events`` (60000), ``rounds`` (3), ``seed`` (7).
"""

from __future__ import annotations

import io
import os
import platform
import random
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import fastavro
from fastavro.validation import validate as fastavro_validate

from cxstream.settings import Settings
from streams.codec import HEADER_SIZE, AvroCodec, build_codec

# share of each input event type in the mix (interactions and transactions dominate bank traffic)
MIX: dict[str, float] = {
    "channel_interaction": 0.40,
    "transaction": 0.20,
    "access_event": 0.15,
    "chat_session": 0.04,
    "survey_response": 0.04,
    "feedback_submitted": 0.03,
    "feedback_status_changed": 0.04,
    "product_holding_changed": 0.02,
    "recommendation_feedback": 0.05,
    "customer_registered": 0.01,
    "consent_changed": 0.01,
    "erasure_requested": 0.01,
}

_CHANNELS = ("web", "app", "social", "chat", "phone", "branch", "atm")
_SURNAMES = ("王", "李", "张", "刘", "陈", "Smith", "Müller")
_GIVEN = ("伟", "芳", "娜", "秀英", "敏", "John", "Anna")
_CITIES = (("CN", "Shanghai", 31.23, 121.47), ("CN", "Beijing", 39.9, 116.4),
           ("CN", "Shenzhen", 22.54, 114.06), ("SG", "Singapore", 1.35, 103.82))
_COMPLAINTS = ("转账一直显示处理中 请尽快回复", "The app logs me out every time I open cards.",
               "网点排队时间太长了", "Fee on my statement I do not understand.")


class _Maker:
    """Builds complete records (every field present) the way the simulator does."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.now = int(time.time() * 1000)

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def customer(self) -> str:
        return f"C{self.rng.randrange(1_000_000):07d}"

    def t(self) -> int:
        return self.now - self.rng.randrange(86_400_000)

    def maybe(self, value: Any, p: float = 0.5) -> Any:
        return value if self.rng.random() < p else None

    def channel_interaction(self) -> dict[str, Any]:
        r = self.rng
        anonymous = r.random() < 0.1
        action = r.choice(("information_request", "service_request", "page_view", "search"))
        return {
            "event_id": self.uuid(), "occurred_at": self.t(),
            "customer_id": None if anonymous else self.customer(),
            "anonymous_id": f"anon-{r.getrandbits(40):x}" if anonymous else None,
            "channel": r.choice(_CHANNELS), "action": action,
            "topic": r.choice(("rates", "card_block", "mortgage", "fees", "login")),
            "session_id": self.uuid(), "duration_ms": r.randrange(50, 600_000),
            "resolved": r.choice((None, True, False)),
            "search_query": "房贷利率" if action == "search" else None,
            "campaign_id": self.maybe("spring-mortgage-2027", 0.15),
            "locale": r.choice(("zh-CN", "zh-CN", "zh-CN", "en-SG", None)),
            "source": r.choice(("web-portal", "mobile-app", "ivr", "branch-crm")),
        }

    def transaction(self) -> dict[str, Any]:
        r = self.rng
        return {
            "event_id": self.uuid(), "occurred_at": self.t(), "customer_id": self.customer(),
            "transaction_id": f"TX{r.getrandbits(48):012x}",
            "account_id": f"6222{r.randrange(10**12):012d}",
            "amount_minor": r.randrange(100, 5_000_000), "currency": "CNY",
            "direction": r.choice(("debit", "credit")),
            "category": r.choice(("groceries", "salary", "transfer", "utilities", "dining")),
            "channel": r.choice(_CHANNELS), "merchant": self.maybe("全家便利店 #1024", 0.7),
            "source": "core-banking",
        }

    def access_event(self) -> dict[str, Any]:
        r = self.rng
        staff = r.random() < 0.2
        country, city, lat, lon = r.choice(_CITIES)
        return {
            "event_id": self.uuid(), "occurred_at": self.t(),
            "principal_id": f"S{r.randrange(5000):05d}" if staff else self.customer(),
            "principal_type": "staff" if staff else "customer",
            "action": r.choice(("login_success", "record_view", "transfer", "api_call")),
            "target_customer_id": self.customer() if staff else None,
            "record_count": r.randrange(1, 20) if staff else 1,
            "staff_team": "branch-ops" if staff else None,
            "ip": f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(256)}",
            "device_id": f"dev-{r.getrandbits(32):08x}",
            "user_agent": "CXBank/7.2 (iOS 18.1)", "geo_country": country, "geo_city": city,
            "geo_lat": lat, "geo_lon": lon, "auth_method": r.choice(("password", "otp", "face")),
            "amount_minor": r.randrange(100, 10**7) if not staff else None,
            "source": "auth-gateway",
        }

    def chat_session(self) -> dict[str, Any]:
        r = self.rng
        t = self.t()
        agent = self.maybe(f"A{r.randrange(300):04d}", 0.4)
        return {
            "event_id": self.uuid(), "occurred_at": t, "customer_id": self.customer(),
            "session_id": self.uuid(), "started_at": t - r.randrange(600_000),
            "agent_joined_at": t - r.randrange(300_000) if agent else None, "agent_id": agent,
            "bot_only": agent is None, "message_count": r.randrange(1, 40),
            "resolved": r.random() < 0.8, "topic": "card_block",
            "transcript_excerpt": self.maybe("您好 我的卡被冻结了", 0.3),
            "source": "chat-platform",
        }

    def survey_response(self) -> dict[str, Any]:
        r = self.rng
        return {
            "event_id": self.uuid(), "occurred_at": self.t(), "customer_id": self.customer(),
            "survey_id": f"SV{r.randrange(10**6):06d}",
            "dimension": r.choice(("information_access", "feedback_handling", "security")),
            "score": r.randrange(0, 101), "channel": r.choice(_CHANNELS),
            "comment": self.maybe("服务很好", 0.2), "source": "survey-tool",
        }

    def feedback_submitted(self) -> dict[str, Any]:
        r = self.rng
        return {
            "event_id": self.uuid(), "occurred_at": self.t(), "customer_id": self.customer(),
            "feedback_id": f"FB{r.getrandbits(40):010x}",
            "channel": r.choice(("app", "web", "phone", "branch")), "category": "fees",
            "severity": r.choice(("low", "medium", "high")), "department": "customer_service",
            "text": r.choice(_COMPLAINTS), "contact_email": self.maybe("li.na@example.cn", 0.3),
            "contact_phone": self.maybe("+86 138 0013 8000", 0.3), "source": "mobile-app",
        }

    def feedback_status_changed(self) -> dict[str, Any]:
        r = self.rng
        return {
            "event_id": self.uuid(), "occurred_at": self.t(), "customer_id": self.customer(),
            "feedback_id": f"FB{r.getrandbits(40):010x}",
            "status": r.choice(("acknowledged", "responded", "resolved")),
            "department": r.choice((None, "customer_service", "it")),
            "agent_id": f"A{r.randrange(300):04d}", "note": self.maybe("已回电客户", 0.3),
            "source": "helpdesk",
        }

    def product_holding_changed(self) -> dict[str, Any]:
        r = self.rng
        return {
            "event_id": self.uuid(), "occurred_at": self.t(), "customer_id": self.customer(),
            "product_id": f"P{r.randrange(60):03d}",
            "product_type": r.choice(("savings", "term_deposit", "current_account")),
            "change": r.choice(("opened", "closed")), "recommendation_id": self.maybe(self.uuid()),
            "channel": r.choice(_CHANNELS), "source": "core-banking",
        }

    def recommendation_feedback(self) -> dict[str, Any]:
        r = self.rng
        return {
            "event_id": self.uuid(), "occurred_at": self.t(), "customer_id": self.customer(),
            "recommendation_id": self.uuid(), "product_id": f"P{r.randrange(60):03d}",
            "action": r.choice(("impression", "click", "dismiss")), "position": r.randrange(5),
            "channel": r.choice(_CHANNELS), "source": "mobile-app",
        }

    def customer_registered(self) -> dict[str, Any]:
        r = self.rng
        t = self.t()
        return {
            "event_id": self.uuid(), "occurred_at": t, "customer_id": self.customer(),
            "full_name": r.choice(_SURNAMES) + r.choice(_GIVEN),
            "email": self.maybe("wang.wei@example.cn", 0.6), "phone": "+86 139 1234 5678",
            "national_id": self.maybe("310101199001011234", 0.8),
            "birth_year": r.randrange(1940, 2007), "city": "Shanghai",
            "risk_profile": "moderate", "segment": r.choice(("mass", "affluent")),
            "customer_since": t - r.randrange(10**11), "source": "core-banking",
        }

    def consent_changed(self) -> dict[str, Any]:
        r = self.rng
        return {
            "event_id": self.uuid(), "occurred_at": self.t(), "customer_id": self.customer(),
            "consent": r.choice(("personalisation", "marketing", "analytics")),
            "granted": r.random() < 0.7, "channel": "app", "source": "mobile-app",
        }

    def erasure_requested(self) -> dict[str, Any]:
        return {
            "event_id": self.uuid(), "occurred_at": self.t(), "customer_id": self.customer(),
            "request_id": self.uuid(), "channel": "branch", "reason": self.maybe("账户已注销"),
            "source": "branch-crm",
        }


def sample_records(count: int, *, seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    """``count`` (event type, record) pairs drawn with the shares of :data:`MIX`."""
    maker = _Maker(seed)
    names = list(MIX)
    chosen = maker.rng.choices(names, weights=[MIX[n] for n in names], k=count)
    return [(name, getattr(maker, name)()) for name in chosen]


def _rate(fn: Callable[..., Any], items: list[Any], rounds: int, star: bool = True) -> float:
    """Events per CPU second of this process, best of ``rounds`` (the cores are shared: CPU time
    is what the codec costs, wall time would add other processes' load)."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        if star:
            for item in items:
                fn(*item)
        else:
            for item in items:
                fn(item)
        best = min(best, time.process_time() - started)
    return round(len(items) / best)


def _fastavro_write(codec: AvroCodec) -> Callable[[str, dict[str, Any]], bytes]:
    def write(name: str, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, codec.registry.latest(name).parsed, record)
        return buf.getvalue()

    return write


def _fastavro_read(codec: AvroCodec) -> Callable[[bytes], Any]:
    def read(data: bytes) -> Any:
        sv = codec.registry.by_id(int.from_bytes(data[1:5], "big"))
        buf = io.BytesIO(data)
        buf.seek(HEADER_SIZE)
        return fastavro.schemaless_reader(buf, sv.parsed)

    return read


def _older_versions(codec: AvroCodec, records: Iterable[tuple[str, dict[str, Any]]],
                    ) -> list[bytes]:
    """Events written with v1 of the types that have a later version (to time resolution)."""
    catalog = getattr(codec.registry, "catalog", None)
    if catalog is None:
        return []
    out = []
    for name, record in records:
        versions = catalog.versions(name)
        if len(versions) < 2:
            continue
        old = versions[0]
        known = {k: v for k, v in record.items() if k in old.field_names}
        buf = io.BytesIO()
        buf.write(b"\x00" + old.schema_id.to_bytes(4, "big"))
        fastavro.schemaless_writer(buf, old.parsed, known)
        out.append(buf.getvalue())
    return out


def run(settings: Settings, events: int = 60_000, rounds: int = 3, seed: int = 7,
        **_: Any) -> dict[str, Any]:
    codec = build_codec(settings)
    records = sample_records(events, seed=seed)
    encoded = [codec.encode(name, record) for name, record in records]
    for data, (name, record) in zip(encoded[:2000], records[:2000], strict=True):
        if codec.decode(data).record != record:  # guard: a wrong codec must not look fast
            raise AssertionError(f"{name}: decode(encode(record)) != record")
    figures: dict[str, Any] = {
        "events": events,
        "rounds": rounds,
        "encode_validate": _rate(codec.encode, records, rounds),
        "validate_only": _rate(codec.validate, records, rounds),
        "encode_only": _rate(codec.encode_unchecked, records, rounds),
        "decode": _rate(codec.decode, encoded, rounds, star=False),
    }
    older = _older_versions(codec, records)
    if older:
        figures["decode_resolving"] = _rate(codec.decode, older, rounds, star=False)
    fastavro_sample = max(1, len(records) // 4)  # fastavro is slower: a quarter is enough
    sub = records[:fastavro_sample]
    figures["fastavro_encode"] = _rate(_fastavro_write(codec), sub, rounds)
    figures["fastavro_validate"] = _rate(
        lambda name, record: fastavro_validate(record, codec.registry.latest(name).parsed), sub,
        rounds,
    )
    figures["fastavro_decode"] = _rate(_fastavro_read(codec), encoded[:fastavro_sample], rounds,
                                       star=False)
    figures["bytes_per_event"] = round(sum(map(len, encoded)) / len(encoded), 1)
    by_type: dict[str, dict[str, float]] = {}
    for name in MIX:
        mine = [r for r in records if r[0] == name]
        framed = [d for d, r in zip(encoded, records, strict=True) if r[0] == name]
        by_type[name] = {
            "share": MIX[name],
            "encode_validate": _rate(codec.encode, mine, rounds),
            "decode": _rate(codec.decode, framed, rounds, star=False),
            "bytes": round(sum(map(len, framed)) / max(1, len(framed)), 1),
        }
    figures["by_type"] = by_type
    figures["targets"] = {"encode_validate": 150_000, "decode": 200_000}
    figures["meets_targets"] = (
        figures["encode_validate"] >= 150_000 and figures["decode"] >= 200_000
    )
    figures["implementation"] = {
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "fastavro": fastavro.__version__,
        "timer": "process CPU time (the cores are shared)",
        "compiled_writers": sum(codec._write_plan(name).compiled for name in MIX),
        "compiled_readers": sum(plan.compiled for plan in codec._read_plans.values()),
    }
    figures["settings"] = {
        "registry_url": settings.registry.url,
        "max_event_bytes": settings.max_event_bytes,
        "topic_prefix": settings.kafka.topic_prefix,
    }
    return figures
