"""POST /v1/events through a real HTTP server and real Kafka: precise per-event errors, only
valid events produced (read back from the topics and decoded), request-level 400/401/413/415/429.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from confluent_kafka import Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from cxstream.api import create_api
from cxstream.api.ingest import FRONTEND_HEADER
from cxstream.settings import Settings
from streams.codec import build_codec
from streams.kafka_config import confluent_config
from streams.topics import delete_topics, ensure_topics, platform_topics
from tests.support.services import LocalStack, free_port

pytestmark = pytest.mark.integration

TYPES = ("channel_interaction", "transaction")
WEB_KEY = "key-of-web"
BRANCH_KEY = "key-of-branch"
MAX_EVENTS = 20
MAX_BODY = 64 * 1024
MAX_EVENT = 2048


@pytest.fixture
def settings(local_stack: LocalStack) -> Iterator[Settings]:
    base = local_stack.settings
    run = uuid.uuid4().hex[:10]
    settings = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"topic_prefix": f"test-api-{run}"}),
            "api": base.api.model_copy(
                update={
                    "keys": {"web": SecretStr(WEB_KEY), "branch": SecretStr(BRANCH_KEY)},
                    "max_events_per_request": MAX_EVENTS,
                    "max_request_bytes": MAX_BODY,
                    "worker_url": None,
                    "request_timeout_seconds": 20.0,
                }
            ),
            "max_event_bytes": MAX_EVENT,
        }
    )
    specs = [s for s in platform_topics(settings) if s.name in {settings.topic(t) for t in TYPES}]
    ensure_topics(settings, specs)
    try:
        yield settings
    finally:
        delete_topics(settings, [s.name for s in specs])


async def _serve(settings: Settings) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(create_api(settings))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    runner, url = await _serve(settings)
    async with aiohttp.ClientSession() as session:
        try:
            yield url, session
        finally:
            await runner.cleanup()


def interaction(**fields: Any) -> dict[str, Any]:
    record = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": 1_796_000_000_000,
        "customer_id": f"c-{uuid.uuid4().hex[:6]}",
        "channel": "web",
        "action": "page_view",
    }
    record.update(fields)
    return {"type": "channel_interaction", "event": record}


def transaction(**fields: Any) -> dict[str, Any]:
    record = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": 1_796_000_000_000,
        "customer_id": "c-tx",
        "transaction_id": "t-1",
        "account_id": "a-1",
        "amount_minor": 1250,
        "direction": "debit",
        "category": "groceries",
    }
    record.update(fields)
    return {"type": "transaction", "event": record}


def read_topics(settings: Settings, expected: int, timeout: float = 20.0) -> list[Any]:
    """Every message of the test's topics (all partitions from the start), waiting for
    ``expected`` and then a moment longer so that extra messages would show."""
    consumer = Consumer(
        confluent_config(settings)
        | {"group.id": f"check-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    try:
        partitions = [
            TopicPartition(settings.topic(name), p, 0)
            for name in TYPES
            for p in range(settings.kafka.partitions)
        ]
        consumer.assign(partitions)
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            got.extend(m for m in consumer.consume(500, timeout=0.5) if m.error() is None)
        got.extend(m for m in consumer.consume(500, timeout=1.5) if m.error() is None)
        return got
    finally:
        consumer.close()


async def test_a_mixed_batch_produces_exactly_the_valid_events_and_names_each_error(
    settings: Settings, api: tuple[str, aiohttp.ClientSession]
) -> None:
    url, session = api
    good_iso = interaction(occurred_at="2026-12-01T08:30:00Z")
    good_source = interaction(source="mobile-app", channel="app")
    good_anon = interaction(customer_id=None, anonymous_id="cookie-1")
    good_tx = transaction()
    items: list[Any] = [
        good_iso,
        interaction(duration_ms="long"),  # wrong type of a field
        good_source,
        {
            "type": "channel_interaction",
            "event": {"event_id": "x", "occurred_at": 1, "channel": "web"},
        },
        interaction(channel="fax"),  # not a symbol of the enum
        interaction(search_query="q" * (MAX_EVENT + 100)),  # oversized once encoded
        interaction(customer_id=None),  # neither customer_id nor anonymous_id: no key
        {"type": "wire_transfer", "event": {}},  # no such event type
        {"type": "alert", "event": {}},  # an output: not postable
        good_anon,
        ["not", "an", "item"],
        interaction(occurred_at="yesterday"),
        interaction(colour="blue"),  # a field the schema does not have
        good_tx,
    ]
    async with session.post(
        f"{url}/v1/events", json={"events": items}, headers={"X-API-Key": WEB_KEY}
    ) as response:
        assert response.status == 200, await response.text()
        body = await response.json()

    results = body["results"]
    assert [r["index"] for r in results] == list(range(len(items)))
    rejected = {
        r["index"]: (r["reason"], r.get("field")) for r in results if r["status"] != "accepted"
    }
    assert rejected == {
        1: ("invalid", "duration_ms"),
        3: ("invalid", "action"),
        4: ("invalid", "channel"),
        5: ("oversized", None),
        6: ("no_key", "customer_id"),
        7: ("unknown_type", None),
        8: ("not_an_input", None),
        10: ("malformed", None),
        11: ("invalid", "occurred_at"),
        12: ("invalid", "colour"),
    }
    assert "fax" in results[4]["error"]
    valid = [good_iso, good_source, good_anon, good_tx]
    assert (body["accepted"], body["rejected"], body["failed"]) == (len(valid), 10, 0)
    assert [r["event_id"] for r in results if r["status"] == "accepted"] == [
        v["event"]["event_id"] for v in valid
    ]

    # the topics hold exactly the valid events, decodable, with the frontend recorded
    codec = build_codec(settings)
    messages = read_topics(settings, len(valid))
    decoded = {}
    for message in messages:
        event = codec.decode(message.value())
        decoded[event.record["event_id"]] = (event, message)
    assert set(decoded) == {v["event"]["event_id"] for v in valid}
    for item in valid:
        event, message = decoded[item["event"]["event_id"]]
        assert event.name == item["type"]
        assert dict(message.headers())[FRONTEND_HEADER] == b"web"
        assert message.topic() == settings.topic(item["type"])
    iso_event = decoded[good_iso["event"]["event_id"]][0].record
    assert iso_event["occurred_at"] == 1_796_113_800_000  # 2026-12-01T08:30:00Z
    assert iso_event["source"] == "web"  # absent: the key's frontend
    assert decoded[good_source["event"]["event_id"]][0].record["source"] == "mobile-app"
    anon_message = decoded[good_anon["event"]["event_id"]][1]
    assert anon_message.key() == b"cookie-1"  # the schema's partition key, second field

    # the metrics count the outcomes by type and reason
    async with session.get(f"{url}/metrics") as response:
        text = await response.text()
    events = {
        (s.labels["type"], s.labels["outcome"], s.labels["reason"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "cxstream_api_events"
        for s in family.samples
        if s.name == "cxstream_api_events_total"
    }
    assert events[("channel_interaction", "accepted", "")] == 3
    assert events[("transaction", "accepted", "")] == 1
    assert events[("channel_interaction", "rejected", "invalid")] == 5
    assert events[("unknown", "rejected", "unknown_type")] == 1
    assert events[("alert", "rejected", "not_an_input")] == 1


async def test_request_level_errors(
    settings: Settings, api: tuple[str, aiohttp.ClientSession]
) -> None:
    url, session = api
    post = f"{url}/v1/events"
    one = {"events": [interaction()]}

    async def status_and_error(**kwargs: Any) -> tuple[int, str]:
        async with session.post(post, **kwargs) as response:
            body = await response.json()
            return response.status, body.get("error", "")

    status, message = await status_and_error(json=one)
    assert status == 401
    assert "API key" in message
    assert (await status_and_error(json=one, headers={"X-API-Key": "guess"}))[0] == 401
    # the other frontend's key, as a bearer token
    bearer = {"Authorization": f"Bearer {BRANCH_KEY}"}
    assert (await status_and_error(json=one, headers=bearer))[0] == 200

    auth = {"X-API-Key": WEB_KEY}
    status, message = await status_and_error(
        data=b'{"events": [}', headers=auth | {"Content-Type": "application/json"}
    )
    assert status == 400
    assert "not valid JSON" in message
    assert "column 13" in message
    status, message = await status_and_error(json={"event": []}, headers=auth)
    assert (status, message) == (400, "body.events must be an array, got null")
    plain = auth | {"Content-Type": "text/plain"}
    status, message = await status_and_error(data=b"events", headers=plain)
    assert status == 415
    assert "text/plain" in message
    status, message = await status_and_error(
        json={"events": [interaction() for _ in range(MAX_EVENTS + 1)]}, headers=auth
    )
    assert status == 413
    assert f"{MAX_EVENTS + 1} events" in message
    assert f"limit {MAX_EVENTS}" in message

    big = json.dumps({"events": [interaction(topic="x" * MAX_BODY)]}).encode()
    status, message = await status_and_error(
        data=big, headers=auth | {"Content-Type": "application/json"}
    )
    assert status == 413
    assert f"limit {MAX_BODY}" in message

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: refused while reading
        for _ in range(MAX_BODY // 1024 + 2):
            yield b" " * 1024

    status, message = await status_and_error(
        data=chunks(), headers=auth | {"Content-Type": "application/json"}
    )
    assert status == 413
    assert f"limit {MAX_BODY}" in message

    # nothing of the refused requests reached Kafka: only the one bearer request's event
    assert len(read_topics(settings, 1)) == 1


async def test_rate_limit_per_key_answers_429_with_retry_after(settings: Settings) -> None:
    limited = settings.model_copy(
        update={
            "api": settings.api.model_copy(
                update={"rate_limit_per_second": 0.5, "rate_limit_burst": 2}
            )
        }
    )
    runner, url = await _serve(limited)
    try:
        async with aiohttp.ClientSession() as session:
            statuses = []
            for _ in range(3):
                async with session.get(
                    f"{url}/v1/customers/c1/recommendations", headers={"X-API-Key": WEB_KEY}
                ) as response:
                    statuses.append(response.status)
                    retry_after = response.headers.get("Retry-After")
            assert statuses == [404, 404, 429]
            assert retry_after is not None
            assert int(retry_after) >= 1
            # another frontend has its own bucket
            async with session.get(
                f"{url}/v1/customers/c1/recommendations", headers={"X-API-Key": BRANCH_KEY}
            ) as response:
                assert response.status == 404
            async with session.get(f"{url}/readyz") as response:
                assert response.status == 200
                assert (await response.json())["status"] == "ready"
    finally:
        await runner.cleanup()
