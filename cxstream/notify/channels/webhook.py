"""Signed webhooks by the Standard Webhooks spec (standardwebhooks.com, v1 symmetric).

Headers: ``webhook-id`` (the delivery's idempotency key, the same on every retry and replay, so
receivers dedupe on it), ``webhook-timestamp`` (integer seconds, fresh per attempt) and
``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>``,
one per configured secret, so a secret can be rotated without a window in which receivers fail.
Secrets are ``whsec_<base64 key>``.

>>> secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
>>> signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE='
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import aiohttp

from cxstream.errors import ConfigurationError
from cxstream.notify.channels import Delivery
from cxstream.notify.channels.posting import post
from cxstream.notify.notification import Notification

SECRET_PREFIX = "whsec_"
H_ID = "webhook-id"
H_TIMESTAMP = "webhook-timestamp"
H_SIGNATURE = "webhook-signature"


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret."""
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError(
            "notify webhook secret is not whsec_<base64> (value hidden)"
        ) from exc


def signature(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    key = secret if isinstance(secret, bytes) else secret_key(secret)
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers, one signature per key."""
    return {
        H_ID: msg_id,
        H_TIMESTAMP: str(timestamp),
        H_SIGNATURE: " ".join(signature(key, msg_id, timestamp, body) for key in keys),
    }


def payload(notification: Notification) -> bytes:
    """``{type, timestamp, data}``: the envelope the spec recommends."""
    fired = datetime.fromtimestamp(notification.fired_at / 1000, tz=UTC)
    return json.dumps(
        {
            "type": f"{notification.source}.{notification.level}",
            "timestamp": fired.isoformat().replace("+00:00", "Z"),
            "data": notification.as_json(),
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


class WebhookChannel:
    name = "webhook"

    def __init__(
        self, session: aiohttp.ClientSession, secrets: Sequence[str], *, timeout: float = 10.0
    ) -> None:
        if not secrets:
            raise ConfigurationError(
                "notify.webhook_secrets is empty: the webhook channel signs every request"
            )
        self._session = session
        self._keys = [secret_key(secret) for secret in secrets]
        self._timeout = timeout

    def headers(
        self, delivery: Delivery, body: bytes, now: float | None = None
    ) -> Mapping[str, str]:
        stamp = int(time.time() if now is None else now)
        return {"content-type": "application/json", **sign(self._keys, delivery.key, stamp, body)}

    async def send(self, delivery: Delivery) -> None:
        body = payload(delivery.notification)
        await post(
            self._session,
            delivery.address,
            body,
            self.headers(delivery, body),
            step=f"notify.webhook to {delivery.recipient}",
            timeout=self._timeout,
        )
