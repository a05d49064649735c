"""The notifier against real Kafka and HTTP: routing by department and hand-over, idempotency
of a re-sent alert, dead letter + fallback after the last attempt, and the ack API stopping
later escalations."""

from __future__ import annotations

import asyncio
import base64
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web
from confluent_kafka import Consumer

from cxstream.notify.receiver import Received, receiver_app
from cxstream.notify.service import NotifierService
from cxstream.settings import (
    NotifyContactSettings,
    NotifyMemberSettings,
    NotifyRotationSettings,
    NotifyRouteSettings,
    NotifySettings,
    Settings,
)
from streams.codec import build_codec
from streams.dlq import header_map
from streams.kafka_config import confluent_config
from streams.producer import EventProducer
from streams.topics import delete_topics, ensure_topics, platform_topics
from tests.support.services import LocalStack, free_port

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
API_KEY = "ack-" + uuid.uuid4().hex
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


def ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def alert(
    alert_id: str,
    subject: str,
    level: str,
    fired: datetime,
    *,
    department: str = "customer_service",
    kind: str = "feedback_sla",
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": ms(fired),
        "alert_id": alert_id,
        "kind": kind,
        "level": level,
        "department": department,
        "subject_id": subject,
        "customer_pseudonym": "p-" + subject,
        "deadline_at": ms(fired),
        "fired_at": ms(fired),
        "late_ms": 0,
        "summary": f"{subject} {level}",
        "link": None,
        "details": {},
    }


def flag(flag_id: str, at: datetime) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": ms(at),
        "flag_id": flag_id,
        "principal_id": "staff-7",
        "principal_type": "staff",
        "customer_id": "cust-42",
        "severity": "critical",
        "rule": "bulk_lookup",
        "score": None,
        "explanation": "300 profiles in 5 min",
        "evidence_event_ids": [],
    }


async def until(check: Callable[[], bool], what: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


def dead_letters(settings: Settings) -> list[dict[str, str]]:
    consumer = Consumer(
        confluent_config(
            settings,
            **{"group.id": "dlq-reader-" + uuid.uuid4().hex, "auto.offset.reset": "earliest"},
        )
    )
    consumer.subscribe([settings.topic("dlq")])
    out: list[dict[str, str]] = []
    try:
        for message in consumer.consume(100, 5.0):
            if message.error() is None:
                out.append(header_map(message.headers()))
    finally:
        consumer.close()
    return out


async def test_routes_dedupes_dead_letters_and_ack_stops_escalation(
    local_stack: LocalStack, tmp_path: Any
) -> None:
    received = Received()
    ivan_fails = lambda msg_id, _attempt: 500 if "/ivan/" in msg_id else 200  # noqa: E731
    runner, url = await serve(receiver_app([SECRET], received=received, status_for=ivan_fails))
    chat: list[dict[str, Any]] = []

    async def incoming(request: web.Request) -> web.Response:
        chat.append(await request.json())
        return web.Response(text="ok")

    chat_app = web.Application()
    chat_app.router.add_post("/chat", incoming)
    chat_runner, chat_url = await serve(chat_app)

    prefix = "nt" + uuid.uuid4().hex[:8]
    base = local_stack.settings
    ack_port = free_port()
    member = lambda name: NotifyMemberSettings(name=name, webhook_url=f"{url}/{name}")  # noqa: E731
    settings = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"topic_prefix": prefix, "partitions": 2}),
            "notify": NotifySettings(
                rotations=[
                    NotifyRotationSettings(
                        name="cs",
                        members=[member("ana"), member("ben")],
                        handover_at=T0,
                        shift_hours=1,
                    ),
                    NotifyRotationSettings(name="risk", members=[member("rita")]),
                    NotifyRotationSettings(
                        name="it",
                        members=[member("ivan")],
                        fallback=NotifyContactSettings(channel="chat", address=chat_url + "/chat"),
                    ),
                ],
                routes=[
                    NotifyRouteSettings(department="customer_service", rotation="cs"),
                    NotifyRouteSettings(department="risk_control", rotation="risk"),
                    NotifyRouteSettings(department="it", rotation="it"),
                ],
                group_id="notify-" + prefix,
                delivery_log_path=tmp_path / "log.sqlite",
                webhook_secrets=[SECRET],
                retry_max_attempts=3,
                retry_initial_seconds=0.01,
                retry_max_seconds=0.05,
                ack_api_key=API_KEY,
                ack_port=ack_port,
            ),
        }
    )
    wanted = {settings.topic(n) for n in ("alert", "security_flag", "dlq")}
    ensure_topics(settings, [s for s in platform_topics(settings) if s.name in wanted])
    service = NotifierService(settings)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(service.run(stop, ready=ready))
    producer = EventProducer(settings, build_codec(settings))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        producer.produce(
            "alert", alert("fb-1:breach", "fb-1", "breach", T0 + timedelta(minutes=10))
        )
        producer.produce(
            "alert", alert("fb-2:breach", "fb-2", "breach", T0 + timedelta(minutes=61))
        )
        # the same alert id again (at-least-once upstream): delivered once per channel
        producer.produce(
            "alert", alert("fb-1:breach", "fb-1", "breach", T0 + timedelta(minutes=10))
        )
        producer.produce("security_flag", flag("flag-1", T0 + timedelta(minutes=5)))
        producer.produce(
            "alert", alert("sink-lag", "sink", "critical", T0, department="it", kind="pipeline")
        )
        producer.flush(10)
        await until(lambda: len(received.by_id) == 3 and len(chat) == 1, "first deliveries")
        assert received.paths == {
            "fb-1:breach/ana/webhook": "/ana",  # before the hand-over at T0 + 1 h
            "fb-2:breach/ben/webhook": "/ben",  # after it
            "flag-1/rita/webhook": "/rita",  # security -> Risk Control
        }
        flag_data = received.by_id["flag-1/rita/webhook"]["data"]
        assert "cust-42" not in str(flag_data)
        assert "staff-7" not in str(flag_data)
        assert "sink-lag/it.fallback/chat" in str(chat[0]["blocks"])
        await until(
            lambda: service.notifier is not None and service.notifier.counts["dead_lettered"] == 1,
            "dead letter",
        )
        letters = await asyncio.to_thread(dead_letters, settings)
        assert [(h["cx.dlq.step"], h["cx.dlq.source.topic"]) for h in letters] == [
            ("notify.webhook", settings.topic("alert"))
        ]
        assert "500" in letters[0]["cx.dlq.error.message"]

        ack_url = f"http://127.0.0.1:{ack_port}/v1/alerts/fb-1:breach/ack"
        async with aiohttp.ClientSession() as http:
            async with http.post(ack_url) as response:
                assert response.status == 401
            auth = {"Authorization": f"Bearer {API_KEY}"}
            async with http.post(ack_url.replace("fb-1:", "nope:"), headers=auth) as response:
                assert response.status == 404
            async with http.post(ack_url, headers=auth, json={"by": "ana"}) as response:
                assert response.status == 200
                body = await response.json()
        assert body["suppresses"] == ["escalation_1", "escalation_2", "escalation_3"]

        later = T0 + timedelta(minutes=30)
        producer.produce("alert", alert("fb-1:escalation_1", "fb-1", "escalation_1", later))
        # same subject = same partition, after the escalation: once it is in, so was the other
        producer.produce("alert", alert("fb-1:warning:2", "fb-1", "warning", later))
        producer.produce("alert", alert("fb-2:escalation_1", "fb-2", "escalation_1", later))
        producer.flush(10)
        await until(
            lambda: (
                {"fb-1:warning:2/ana/webhook", "fb-2:escalation_1/ana/webhook"}
                <= set(received.by_id)
            ),
            "deliveries after the ack",
        )
        assert "fb-1:escalation_1" not in received.alert_ids()
        assert service.notifier is not None
        assert service.notifier.log.states("fb-1:escalation_1") == {
            "fb-1:escalation_1/*/*": "suppressed"
        }
        assert received.repeats == 0
        assert received.rejected == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        producer.close()
        await runner.cleanup()
        await chat_runner.cleanup()
        delete_topics(settings, sorted(wanted))
