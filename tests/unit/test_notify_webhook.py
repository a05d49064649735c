"""Standard Webhooks signing and the integrators' verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

import pytest

from cxstream.notify.channels.webhook import payload, secret_key, sign, signature
from cxstream.notify.errors import WebhookVerificationError
from cxstream.notify.notification import Notification
from cxstream.notify.receiver import verify

# the example of the spec (standard-webhooks/standard-webhooks, spec/standard-webhooks.md)
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def test_signature_matches_the_spec_example() -> None:
    assert signature(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE


def test_signature_is_hmac_sha256_of_id_timestamp_body() -> None:
    secret = new_secret()
    body = b'{"x":"y"}'
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = hmac.new(key, b"id-1.1700000000." + body, hashlib.sha256).digest()
    assert (
        signature(secret, "id-1", 1700000000, body) == "v1," + base64.b64encode(expected).decode()
    )


def test_verify_accepts_spec_example_and_rejects_tampering() -> None:
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TS),
        "webhook-signature": SPEC_SIGNATURE,
    }
    assert verify(headers, SPEC_BODY, [SPEC_SECRET], now=SPEC_TS + 1) == SPEC_ID
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(headers, SPEC_BODY.replace(b"2432", b"2433"), [SPEC_SECRET], now=SPEC_TS)
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify({**headers, "webhook-id": "msg_other"}, SPEC_BODY, [SPEC_SECRET], now=SPEC_TS)
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(headers, SPEC_BODY, [new_secret()], now=SPEC_TS)


def test_verify_rejects_old_and_future_timestamps() -> None:
    headers = sign([secret_key(SPEC_SECRET)], "m", 1_700_000_000, b"{}")
    assert verify(headers, b"{}", [SPEC_SECRET], tolerance=300, now=1_700_000_300) == "m"
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify(headers, b"{}", [SPEC_SECRET], tolerance=300, now=1_700_000_301)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify(headers, b"{}", [SPEC_SECRET], tolerance=300, now=1_699_999_699)


def test_verify_rejects_missing_headers_and_non_v1_signatures() -> None:
    headers = sign([secret_key(SPEC_SECRET)], "m", 1_700_000_000, b"{}")
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify({"webhook-id": "m"}, b"{}", [SPEC_SECRET], now=1_700_000_000)
    v2 = {**headers, "webhook-signature": headers["webhook-signature"].replace("v1,", "v2,")}
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(v2, b"{}", [SPEC_SECRET], now=1_700_000_000)


def test_rotation_sends_one_signature_per_secret_and_either_side_verifies() -> None:
    old, new = new_secret(), new_secret()
    headers = sign([secret_key(old), secret_key(new)], "m", 1_700_000_000, b"{}")
    assert len(headers["webhook-signature"].split()) == 2
    for receiver_secrets in ([old], [new], [new_secret(), old]):
        assert verify(headers, b"{}", receiver_secrets, now=1_700_000_000) == "m"


def test_payload_is_the_spec_envelope_with_the_alert() -> None:
    n = Notification(
        "al-1",
        "feedback_sla",
        "breach",
        "customer_service",
        "fb-9",
        1_700_000_000_000,
        "feedback fb-9 breached",
        customer_pseudonym="p0",
    )
    body = json.loads(payload(n))
    assert body["type"] == "alert.breach"
    assert body["timestamp"] == "2023-11-14T22:13:20Z"
    assert body["data"]["alert_id"] == "al-1"
    assert body["data"]["customer_pseudonym"] == "p0"
