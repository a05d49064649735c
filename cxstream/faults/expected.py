"""Profiles recomputed from the produced events, independently of ``processors.profiles``.

A plain fold, per customer, of that customer's events in any order (event time decides; an
event id counts once, so client re-sends and replays cannot count twice). It deliberately shares
nothing with :mod:`processors.profiles.fold` except the segment rule (a pure function of the
profile, part of the contract) so that a bug in the processor cannot hide in both. Same rules as
the recomputation in ``tests/integration/test_profiles_worker.py``, which it was ported from.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from processors.profiles.segment import segment

ONLINE = {"web", "app", "social", "chat"}
REQUESTS = {"information_request", "service_request"}
SELF_SEEN = {
    "channel_interaction", "chat_session", "customer_registered", "feedback_submitted",
    "survey_response", "transaction", "product_holding_changed", "access_event",
    "recommendation_feedback", "consent_changed", "erasure_requested",
}  # fmt: skip
SEVERITY = ["low", "medium", "high", "critical"]
#: what the recomputation reads: every customer input event (the bank's feedback status changes
#: too: they do not move last seen but close feedback) plus the security flags raised
PROFILE_INPUTS: tuple[str, ...] = (*sorted(SELF_SEEN), "feedback_status_changed", "security_flag")
#: hash fields of the mirrored profile that are bookkeeping, not profile content
BOOKKEEPING = ("version", "updated_at")


def expected_profiles(events: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Profiles from scratch: per customer, plain loops over that customer's events."""
    unique: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, record in events:
        unique.setdefault(record["event_id"], (name, record))  # client retries count once
    links: dict[str, str] = {}
    by_customer: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    anonymous: dict[str, list[dict[str, Any]]] = {}
    for name, r in unique.values():
        if name in ("access_event", "security_flag"):
            cid = r["principal_id"] if r["principal_type"] == "customer" else None
        else:
            cid = r.get("customer_id")
        if cid is None:
            if name == "channel_interaction":
                anonymous.setdefault(r["anonymous_id"], []).append(r)
            continue
        by_customer.setdefault(cid, []).append((name, r))
        if name == "channel_interaction" and r.get("anonymous_id"):
            links.setdefault(r["anonymous_id"], cid)
    for aid, cid in links.items():
        by_customer[cid].extend(("anonymous", r) for r in anonymous.get(aid, []))
    return {cid: _profile(cid, evs, links) for cid, evs in by_customer.items()}


def _latest(old: tuple[Any, int] | None, value: Any, at: int) -> tuple[Any, int]:
    return (value, at) if old is None or (at, value) > (old[1], old[0]) else old


def _profile(
    cid: str, events: list[tuple[str, dict[str, Any]]], links: dict[str, str]
) -> dict[str, Any]:
    channels: dict[str, dict[str, int]] = {}
    online = offline = 0
    seen: int | None = None
    tx: dict[str, dict[str, Any]] = {}
    per_currency: Counter[tuple[str, str]] = Counter()
    tx_count, tx_last = 0, None
    products: dict[str, tuple[int, int]] = {}
    feedback: dict[str, dict[str, Any]] = {}
    surveys: dict[str, tuple[int, int]] = {}
    consents: dict[str, tuple[bool, int]] = {}
    flags, flag_last, flag_sev = 0, None, -1
    logins: dict[str, Any] = {"success": 0, "failure": 0, "last_at": None}
    recos = {"impression": 0, "click": 0, "convert": 0, "dismiss": 0}
    chats: dict[str, Any] = {"count": 0, "last_at": None}
    registration, reg_at = None, None
    erasure = None
    for name, r in events:
        at = r["occurred_at"]
        if name in SELF_SEEN or name == "anonymous":
            seen = at if seen is None else max(seen, at)
        if name in ("channel_interaction", "anonymous"):
            entry = channels.setdefault(r["channel"], {"count": 0, "last_at": at})
            entry["count"] += 1
            entry["last_at"] = max(entry["last_at"], at)
            if r["action"] in REQUESTS:
                if r["channel"] in ONLINE:
                    online += 1
                else:
                    offline += 1
        elif name == "transaction":
            cat = tx.setdefault(
                r["category"], {"count": 0, "last_at": at, "sum_minor": {}, "avg_minor": {}}
            )
            cat["count"] += 1
            cat["last_at"] = max(cat["last_at"], at)
            cat["sum_minor"][r["currency"]] = (
                cat["sum_minor"].get(r["currency"], 0) + r["amount_minor"]
            )
            per_currency[(r["category"], r["currency"])] += 1
            tx_count += 1
            tx_last = at if tx_last is None else max(tx_last, at)
        elif name == "product_holding_changed":
            held = 1 if r["change"] == "opened" else 0
            old = products.get(r["product_id"])
            # later wins; in the same millisecond "closed" wins
            if old is None or (at, -held) > (old[1], -old[0]):
                products[r["product_id"]] = (held, at)
        elif name == "feedback_submitted":
            feedback.setdefault(r["feedback_id"], {})["submitted"] = at
        elif name == "feedback_status_changed":
            item = feedback.setdefault(r["feedback_id"], {})
            item["status"] = _latest(item.get("status"), r["status"], at)
        elif name == "survey_response":
            surveys[r["dimension"]] = _latest(surveys.get(r["dimension"]), r["score"], at)
        elif name == "consent_changed":
            old_c = consents.get(r["consent"])
            if old_c is None or (at, not r["granted"]) > (old_c[1], not old_c[0]):
                consents[r["consent"]] = (r["granted"], at)
        elif name == "security_flag":
            flags += 1
            flag_last = at if flag_last is None else max(flag_last, at)
            flag_sev = max(flag_sev, SEVERITY.index(r["severity"]))
        elif name == "access_event":
            if r["action"] == "login_success":
                logins["success"] += 1
                logins["last_at"] = max(logins["last_at"] or at, at)
            elif r["action"] == "login_failure":
                logins["failure"] += 1
        elif name == "recommendation_feedback":
            recos[r["action"]] += 1
        elif name == "chat_session":
            chats["count"] += 1
            chats["last_at"] = max(chats["last_at"] or at, at)
        elif name == "customer_registered":
            key = (at, r["segment"], r["risk_profile"], r["customer_since"])
            if reg_at is None or key > reg_at:
                reg_at = key
                registration = {
                    "bank_segment": r["segment"],
                    "risk_profile": r["risk_profile"],
                    "customer_since": r["customer_since"],
                }
        elif name == "erasure_requested":
            erasure = at if erasure is None else min(erasure, at)
    for category, cat in tx.items():
        for currency, total in cat["sum_minor"].items():
            # an average per currency: amounts in two currencies do not add up
            cat["avg_minor"][currency] = round(total / per_currency[(category, currency)], 2)
    open_at = [
        item["submitted"]
        for item in feedback.values()
        if "submitted" in item and (item.get("status") or ("",))[0] != "resolved"
    ]
    best = max(channels.items(), key=lambda c: (c[1]["count"], c[1]["last_at"], c[0]), default=None)
    profile = {
        "customer_id": cid,
        "channels": dict(sorted(channels.items())),
        "preferred_channel": best[0] if best else None,
        "last_seen_at": seen,
        "info_requests_online": online,
        "info_requests_offline": offline,
        "transactions": {"count": tx_count, "last_at": tx_last, "by_category": tx},
        "products": sorted(p for p, (held, _) in products.items() if held),
        "open_feedback": len(open_at),
        "oldest_open_feedback_at": min(open_at) if open_at else None,
        "survey_scores": {d: s for d, (s, _) in sorted(surveys.items())},
        "consents": {k: g for k, (g, _) in sorted(consents.items())},
        "personalisation_opt_out": consents.get("personalisation", (True, 0))[0] is False,
        "security_flags": {
            "count": flags,
            "last_at": flag_last,
            "max_severity": SEVERITY[flag_sev] if flags else None,
        },
        "logins": logins,
        "recommendations": recos,
        "chats": chats,
        "registration": registration,
        "erasure_requested_at": erasure,
        "linked_anonymous_ids": sum(1 for c in links.values() if c == cid),
    }
    profile["segment"] = segment(profile)
    return profile
