"""Crash test: SIGKILL the notifier (a subprocess) at random points while alerts flow and
restart it; afterwards the receiver saw every alert exactly once after dedupe by webhook-id,
and nothing that was not sent."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from cxstream.notify.receiver import Received, receiver_app
from cxstream.settings import (
    NotifyMemberSettings,
    NotifyRotationSettings,
    NotifyRouteSettings,
)
from streams.codec import build_codec
from streams.producer import EventProducer
from streams.topics import delete_topics, ensure_topics, platform_topics
from tests.support.services import LocalStack, free_port

ALERTS = 1500
KILLS = 3
SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()


def record(i: int, now_ms: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": now_ms,
        "alert_id": f"fb-{i}:breach",
        "kind": "feedback_sla",
        "level": "breach",
        "department": "customer_service",
        "subject_id": f"fb-{i}",
        "customer_pseudonym": None,
        "deadline_at": now_ms,
        "fired_at": now_ms,
        "late_ms": 0,
        "summary": f"fb-{i} breached",
        "link": None,
        "details": {},
    }


async def start(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cxstream.notify", "serve", env=env, stdout=out, stderr=out
        )


async def test_sigkill_at_random_points_loses_and_invents_nothing(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    print(f"crash test seed {seed}")
    received = Received()
    runner = web.AppRunner(receiver_app([SECRET], received=received))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()

    prefix = "nc" + uuid.uuid4().hex[:8]
    settings = local_stack.settings.model_copy(
        update={
            "kafka": local_stack.settings.kafka.model_copy(
                update={"topic_prefix": prefix, "partitions": 2}
            )
        }
    )
    wanted = {settings.topic(n) for n in ("alert", "security_flag", "dlq")}
    ensure_topics(settings, [s for s in platform_topics(settings) if s.name in wanted])
    rotation = NotifyRotationSettings(
        name="cs",
        members=[NotifyMemberSettings(name="ana", webhook_url=f"http://127.0.0.1:{port}/h")],
    )
    route = NotifyRouteSettings(department="customer_service", rotation="cs")
    env = {
        **os.environ,
        "CX_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "CX_KAFKA__TOPIC_PREFIX": prefix,
        "CX_NOTIFY__ROTATIONS": json.dumps([rotation.model_dump(mode="json")]),
        "CX_NOTIFY__ROUTES": json.dumps([route.model_dump(mode="json")]),
        "CX_NOTIFY__WEBHOOK_SECRETS": json.dumps([SECRET]),
        "CX_NOTIFY__DELIVERY_LOG_PATH": str(tmp_path / "delivery.sqlite"),
        "CX_NOTIFY__GROUP_ID": "notify-" + prefix,
        "CX_NOTIFY__INSTANCE_ID": "notify-" + prefix + "-0",
        "CX_NOTIFY__BATCH_MAX": "100",
        "CX_NOTIFY__CONCURRENCY": "16",
        "CX_LOG_LEVEL": "WARNING",
    }
    producer = EventProducer(settings, build_codec(settings))
    now_ms = int(time.time() * 1000)
    for i in range(ALERTS):
        producer.produce("alert", record(i, now_ms))
    producer.flush(30)
    producer.close()

    log = tmp_path / "notifier.log"
    kill_at = sorted(rng.sample(range(50, ALERTS - 50), KILLS))
    seen_at_kill: list[int] = []
    process = await start(env, log)
    try:
        for threshold in kill_at:
            deadline = time.monotonic() + 60
            while len(received.by_id) < threshold:
                assert process.returncode is None, log.read_text()[-2000:]
                assert time.monotonic() < deadline, f"stuck at {len(received.by_id)}"
                await asyncio.sleep(0.005)
            process.send_signal(signal.SIGKILL)
            await process.wait()
            seen_at_kill.append(len(received.by_id))
            process = await start(env, log)
        deadline = time.monotonic() + 60
        while len(received.by_id) < ALERTS and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)
        await runner.cleanup()
        delete_topics(settings, sorted(wanted))
    print(
        f"kills after {seen_at_kill} distinct deliveries; {received.repeats} repeats deduped "
        f"by webhook-id out of {received.requests} requests"
    )
    assert all(n < ALERTS for n in seen_at_kill), "a kill came after the run had finished"
    expected = {f"fb-{i}:breach" for i in range(ALERTS)}
    ids = received.alert_ids()
    assert len(ids) == len(set(ids)) == ALERTS, log.read_text()[-2000:]
    assert set(ids) == expected
    assert set(received.by_id) == {f"{a}/ana/webhook" for a in expected}
    assert received.rejected == 0
