"""Webhook delivery figure of issue 5 ("webhook delivery >= 500 alerts/s to a local receiver"),
wired by the lead under ``cxstream bench sla`` next to the SLA engine's figures.

- ``delivery``: ``alerts`` (5000) alert events preloaded on the alert topic, consumed by the real
  :class:`~cxstream.notify.service.NotifierService` (decode, route, sign, POST, delivery log,
  commit) delivering signed webhooks to ``cxstream notify receiver`` running in a subprocess (it
  verifies every signature and dedupes by ``webhook-id``). Rate = delivered alerts from the first
  delivery to the last (the consumer-group join does not count).
- ``raw_post``: the reference limit measured in the same run: pre-signed bodies POSTed by aiohttp
  with the same concurrency to the same receiver (no Kafka, no log, no signing).

Options: ``alerts`` (5000), ``concurrency`` (64), ``batch_max`` (500), ``partitions`` (4).
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from cxstream.settings import (
    NotifyMemberSettings,
    NotifyRotationSettings,
    NotifyRouteSettings,
    Settings,
)

TARGET_ALERTS_PER_S = 500.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alert(i: int, now_ms: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": now_ms,
        "alert_id": f"bench-{i}:breach",
        "kind": "feedback_sla",
        "level": "breach",
        "department": "customer_service",
        "subject_id": f"bench-{i}",
        "customer_pseudonym": "p" + str(i),
        "deadline_at": now_ms,
        "fired_at": now_ms,
        "late_ms": 0,
        "summary": f"feedback bench-{i} breached",
        "link": None,
        "details": {},
    }


def _wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"bench sla_delivery: receiver on port {port} did not start")


async def _deliver(settings: Settings, alerts: int) -> dict[str, Any]:
    from cxstream.notify.service import NotifierService

    service = NotifierService(settings)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(service.run(stop, ready=ready))
    waiting = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiting}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what stopped the service
    started = time.perf_counter()
    first = None
    while True:
        notifier = service.notifier
        done = notifier.counts["delivered"] if notifier is not None else 0
        if done and first is None:
            first = (time.perf_counter(), done)
        if done >= alerts or task.done():
            break
        await asyncio.sleep(0.002)
    ended = time.perf_counter()
    stop.set()
    await task
    if first is None or service.notifier is None:
        raise RuntimeError("bench sla_delivery: nothing was delivered")
    counts = dict(service.notifier.counts)
    span = ended - first[0]
    return {
        "alerts_per_s": round((done - first[1]) / span, 1) if span > 0 else 0.0,
        "delivered": done,
        "seconds_incl_group_join": round(ended - started, 2),
        "attempts": counts.get("attempts", 0),
        "dead_lettered": counts.get("dead_lettered", 0),
    }


async def _raw_post(url: str, secret: str, count: int, concurrency: int) -> float:
    import aiohttp

    from cxstream.notify.channels.webhook import secret_key, sign

    key = secret_key(secret)
    stamp = int(time.time())
    requests = []
    for i in range(count):
        body = b'{"data":{"alert_id":"raw-%d"},"type":"alert.breach"}' % i
        requests.append(
            (body, {"content-type": "application/json", **sign([key], f"raw-{i}", stamp, body)})
        )
    queue = iter(requests)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

        async def worker() -> None:
            for body, headers in queue:
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"raw post: receiver answered {response.status}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - started)


def run(settings: Settings, **options: Any) -> dict[str, Any]:
    from streams.codec import build_codec
    from streams.producer import EventProducer
    from streams.topics import delete_topics, ensure_topics, platform_topics

    alerts = int(options.get("alerts", 5000))
    concurrency = int(options.get("concurrency", 64))
    batch_max = int(options.get("batch_max", 500))
    partitions = int(options.get("partitions", settings.kafka.partitions))
    run_id = uuid.uuid4().hex[:8]
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    port = _free_port()
    url = f"http://127.0.0.1:{port}/hook"
    workdir = Path(tempfile.mkdtemp(prefix=f"cx-bench-notify-{run_id}-"))
    rotation = NotifyRotationSettings(
        name="cs", members=[NotifyMemberSettings(name="oncall", webhook_url=url)]
    )
    settings = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(
                update={"topic_prefix": f"bnotify{run_id}", "partitions": partitions}
            ),
            "notify": settings.notify.model_copy(
                update={
                    "rotations": [rotation],
                    "routes": [NotifyRouteSettings(department="customer_service", rotation="cs")],
                    "webhook_secrets": [SecretStr(secret)],
                    "group_id": f"bench-notify-{run_id}",
                    "instance_id": None,
                    "ack_api_key": None,
                    "delivery_log_path": workdir / "delivery.sqlite",
                    "concurrency": concurrency,
                    "batch_max": batch_max,
                }
            ),
        }
    )
    receiver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cxstream.notify",
            "receiver",
            "--port",
            str(port),
            "--secret",
            secret,
            "--jsonl",
            str(workdir / "received.jsonl"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wanted = {settings.topic(n) for n in ("alert", "security_flag", "dlq")}
    try:
        _wait_for_port(port)
        ensure_topics(settings, [s for s in platform_topics(settings) if s.name in wanted])
        now_ms = int(time.time() * 1000)
        with EventProducer(settings, build_codec(settings)) as producer:
            for i in range(alerts):
                producer.produce("alert", _alert(i, now_ms))
            producer.flush(60)
        delivery = asyncio.run(_deliver(settings, alerts))
        time.sleep(0.2)  # the receiver appends its last lines
        with (workdir / "received.jsonl").open() as lines:
            received = sum(1 for _ in lines)
        raw = asyncio.run(_raw_post(url, secret, alerts, concurrency))
    finally:
        receiver.terminate()
        receiver.wait(10)
        delete_topics(settings, sorted(wanted))
    return {
        "delivery": delivery,
        "raw_post_per_s": round(raw, 1),
        "delivery_vs_raw": round(delivery["alerts_per_s"] / raw, 3) if raw else 0.0,
        "receiver_distinct_ids": received,
        "target_alerts_per_s": TARGET_ALERTS_PER_S,
        "target_met": delivery["alerts_per_s"] >= TARGET_ALERTS_PER_S,
        "settings": {
            "alerts": alerts,
            "concurrency": concurrency,
            "batch_max": batch_max,
            "partitions": partitions,
        },
    }
