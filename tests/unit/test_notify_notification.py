"""Alerts and security flags become one notification; no clear customer ids leave."""

from __future__ import annotations

import json

from cxstream.notify.channels.webhook import payload
from cxstream.notify.notification import from_event
from cxstream.privacy import pseudonymise
from cxstream.settings import PrivacySettings, Settings

FLAG = {
    "event_id": "e1",
    "occurred_at": 1_700_000_000_000,
    "flag_id": "flag-1",
    "principal_id": "cust-123456",
    "principal_type": "customer",
    "customer_id": "cust-123456",
    "severity": "high",
    "rule": "impossible_travel",
    "score": 0.93,
    "explanation": "two countries within 10 minutes",
    "evidence_event_ids": ["a", "b"],
}


def test_security_flag_goes_to_risk_control_with_pseudonyms_only() -> None:
    settings = Settings()
    n = from_event("security_flag", FLAG, settings)
    assert (n.alert_id, n.kind, n.department, n.level) == (
        "flag-1",
        "security",
        "risk_control",
        "breach",
    )
    token = pseudonymise("cust-123456", settings, pii_class="customer_id")
    assert n.subject_id == token
    assert n.customer_pseudonym == token
    body = payload(n).decode()
    assert "cust-123456" not in body
    assert json.loads(body)["data"]["details"]["rule"] == "impossible_travel"


def test_clear_ids_only_when_the_settings_allow() -> None:
    clear = Settings().model_copy(update={"privacy": PrivacySettings(store_pii_in_clear=True)})
    n = from_event("security_flag", FLAG, clear)
    assert n.customer_pseudonym == "cust-123456"
