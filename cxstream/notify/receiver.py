"""For integrators: verify Standard Webhooks requests, and a tiny receiver that shows them.

>>> from cxstream.notify.channels.webhook import sign, secret_key
>>> secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
>>> headers = sign([secret_key(secret)], "msg_1", 1700000000, b'{"a":1}')
>>> verify(headers, b'{"a":1}', [secret], now=1700000010)
'msg_1'

:func:`verify` accepts a request when any ``v1`` signature matches any of the receiver's
secrets (so either side can rotate) and the timestamp is within ``tolerance`` seconds of now
(replay protection). :func:`receiver_app` is an aiohttp app that verifies, dedupes by
``webhook-id`` (answering 200 to repeats, as the spec asks, so the sender stops retrying) and
records what on-call would get.
"""

from __future__ import annotations

import base64
import hmac
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web

from cxstream.notify.channels.webhook import H_ID, H_SIGNATURE, H_TIMESTAMP, secret_key, signature
from cxstream.notify.errors import WebhookVerificationError

DEFAULT_TOLERANCE_SECONDS = 300


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> str:
    """The ``webhook-id`` of an authentic request; else :class:`WebhookVerificationError`."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = lower.get(H_ID), lower.get(H_TIMESTAMP), lower.get(H_SIGNATURE)
    if not msg_id or not stamp or not signatures:
        raise WebhookVerificationError("webhook: missing webhook-id/-timestamp/-signature header")
    try:
        timestamp = int(stamp)
    except ValueError as exc:
        raise WebhookVerificationError(
            f"webhook: timestamp {stamp[:20]!r} is not an integer"
        ) from exc
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError(
            f"webhook {msg_id}: timestamp {timestamp} is {current - timestamp:+.0f} s from now, "
            f"outside the {tolerance} s tolerance"
        )
    wanted = {signature(secret_key(s), msg_id, timestamp, body).encode() for s in secrets}
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version != "v1":
            continue
        try:
            base64.b64decode(value, validate=True)
        except ValueError:
            continue
        given = candidate.encode()
        if any(hmac.compare_digest(given, w) for w in wanted):
            return msg_id
    raise WebhookVerificationError(f"webhook {msg_id}: no signature matches")


@dataclass
class Received:
    """What a receiver got: first delivery per webhook-id, and counts of everything else."""

    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: request path of the first delivery per webhook-id (which member's URL was called)
    paths: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    repeats: int = 0
    rejected: int = 0

    def alert_ids(self) -> list[str]:
        return [payload["data"]["alert_id"] for payload in self.by_id.values()]


RECEIVED_KEY = web.AppKey("received", Received)


def receiver_app(
    secrets: Sequence[str],
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    received: Received | None = None,
    out: TextIO | None = None,
    status_for: Callable[[str, int], int] | None = None,
) -> web.Application:
    """An aiohttp app: POST anywhere; verified, deduped, recorded, printed as JSON lines.

    ``status_for(webhook_id, attempt)`` lets tests make a receiver fail (500) on purpose.
    """
    record = received if received is not None else Received()
    attempts: dict[str, int] = {}

    async def handle(request: web.Request) -> web.Response:
        record.requests += 1
        body = await request.read()
        try:
            msg_id = verify(request.headers, body, secrets, tolerance=tolerance)
        except WebhookVerificationError as exc:
            record.rejected += 1
            return web.json_response({"error": str(exc)}, status=401)
        attempts[msg_id] = attempts.get(msg_id, 0) + 1
        if status_for is not None:
            status = status_for(msg_id, attempts[msg_id])
            if status >= 300:
                return web.json_response({"error": "failing on purpose"}, status=status)
        if msg_id in record.by_id:
            record.repeats += 1
            return web.json_response({"duplicate": True})
        payload = json.loads(body)
        record.by_id[msg_id] = payload
        record.paths[msg_id] = request.path
        if out is not None:
            out.write(json.dumps({"webhook_id": msg_id, **payload}, sort_keys=True) + "\n")
            out.flush()
        return web.json_response({"ok": True})

    app = web.Application()
    app[RECEIVED_KEY] = record
    app.router.add_post("/{tail:.*}", handle)
    return app


def run_receiver(
    secrets: Sequence[str], host: str, port: int, *, tolerance: int, jsonl: Path | None = None
) -> None:
    """Serve :func:`receiver_app` until Ctrl-C (``cxstream notify receiver``)."""
    out = jsonl.open("a", encoding="utf-8") if jsonl is not None else sys.stdout
    try:
        web.run_app(
            receiver_app(secrets, tolerance=tolerance, out=out), host=host, port=port, print=None
        )
    finally:
        if jsonl is not None:
            out.close()
