"""Pure profile state and how one event folds into it (no Faust, no I/O).

A profile is a plain JSON-able dict with short keys (it is stored JSON-encoded, one table value
per customer, so its serialized size is its memory cost):

==========  ==========================================================================
``o``       ``{topic code: last applied offset}`` (exact replay detection, see below)
``v``       version: applied events (and accepted merges) so far
``c``       ``{channel: [count, last use ms]}`` (``channel_interaction``)
``ir``      ``[online, offline]`` information/service requests (the boards' definition)
``ls``      last seen (max ``occurred_at`` of the customer's own activity)
``t``       ``{"category|currency": [count, sum minor units, last ms]}``
``p``       ``{product_id: [held 0/1, at]}`` (the latest change by event time wins)
``f``       ``{feedback_id: [submitted_at | None, status | None, status_at]}``
``s``       ``{dimension: [score, at]}`` (score of the latest response by event time)
``k``       ``{consent: [granted 0/1, at]}``
``x``       ``[security flags, last flag ms, highest severity rank]``
``l``       ``[logins, failed logins, last login ms]`` (customer ``access_event``)
``r``       ``[impressions, clicks, converts, dismisses]`` (``recommendation_feedback``)
``h``       ``[chat sessions, last ms]``
``g``       ``[at, bank segment, risk profile, customer_since]`` (``customer_registered``)
``erased``  latest erasure at (ms); an erased profile keeps only ``o``, ``v``, ``erased``
``a``       ``{anonymous_id: [version, activity]}`` linked anonymous activity (stitching)
==========  ==========================================================================

Event time: every "latest" is the maximum of ``(occurred_at, value)``, counts are sums, so the
result does not depend on arrival order (ties broken by the value, e.g. "closed" beats "opened"
in the same millisecond, a withdrawn consent beats a granted one). Counting is not idempotent
by itself; :func:`fold_event` leaves that to the caller, which checks the per-topic offset in
``o`` (a replay after a crash: same offset) and the dedupe window (a client retry: same event
id, another offset) before folding. No PII-marked field or free text is ever read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dashboards.queries import REQUEST_ACTIONS
from sinks.clickhouse.tables import ONLINE_CHANNELS

Profile = dict[str, Any]
Fold = Callable[[Profile, dict[str, Any]], None]

_REQUESTS = frozenset(REQUEST_ACTIONS)
_ONLINE = frozenset(ONLINE_CHANNELS)
SEVERITY_RANK = {"low": 1, "medium": 2, "high": 3, "critical": 4}
SEVERITIES = {rank: name for name, rank in SEVERITY_RANK.items()}
_RECO_SLOT = {"impression": 0, "click": 1, "convert": 2, "dismiss": 3}
#: feedback statuses after which an item is no longer open
CLOSED_STATUSES = frozenset({"resolved"})

#: short code per source topic, the keys of ``o`` (internal topics included)
TOPIC_CODES: dict[str, str] = {
    "channel_interaction": "ci",
    "chat_session": "cs",
    "customer_registered": "cr",
    "feedback_submitted": "fs",
    "feedback_status_changed": "fc",
    "survey_response": "sr",
    "transaction": "tx",
    "product_holding_changed": "ph",
    "access_event": "ae",
    "recommendation_feedback": "rf",
    "consent_changed": "cc",
    "erasure_requested": "er",
    "security_flag": "sf",
    "profile_links": "lk",
    "profile_merges": "mg",
}


def customer_of(name: str, record: dict[str, Any]) -> str | None:
    """The customer an event belongs to (``None``: not a customer's, e.g. staff access)."""
    if name == "access_event" or name == "security_flag":
        if record["principal_type"] != "customer":
            return None
        principal: str = record["principal_id"]
        return principal
    customer: str | None = record.get("customer_id")
    return customer


def _seen(p: Profile, at: int) -> None:
    if at > p.get("ls", -1):
        p["ls"] = at


def fold_channel(p: Profile, r: dict[str, Any]) -> None:
    """The channel part of an interaction (shared by customers and anonymous activity)."""
    at = r["occurred_at"]
    channel = r["channel"]
    channels = p.get("c")
    if channels is None:
        channels = p["c"] = {}
    entry = channels.get(channel)
    if entry is None:
        channels[channel] = [1, at]
    else:
        entry[0] += 1
        if at > entry[1]:
            entry[1] = at
    if r["action"] in _REQUESTS:
        requests = p.get("ir")
        if requests is None:
            requests = p["ir"] = [0, 0]
        requests[0 if channel in _ONLINE else 1] += 1
    if at > p.get("ls", -1):
        p["ls"] = at


def _latest(entries: dict[str, list[Any]], key: str, value: Any, at: int) -> None:
    """Keep ``[value, at]`` under ``key`` if it is later (ties: the larger value)."""
    old = entries.get(key)
    if old is None or at > old[1] or (at == old[1] and value > old[0]):
        entries[key] = [value, at]


def _transaction(p: Profile, r: dict[str, Any]) -> None:
    at = r["occurred_at"]
    stats = p.setdefault("t", {})
    key = f"{r['category']}|{r['currency']}"
    entry = stats.get(key)
    if entry is None:
        stats[key] = [1, r["amount_minor"], at]
    else:
        entry[0] += 1
        entry[1] += r["amount_minor"]
        if at > entry[2]:
            entry[2] = at
    _seen(p, at)


def _product(p: Profile, r: dict[str, Any]) -> None:
    at = r["occurred_at"]
    # closed (0) wins a tie: in the same millisecond, "opened then closed" is the safe reading
    old = p.setdefault("p", {}).get(r["product_id"])
    held = 1 if r["change"] == "opened" else 0
    if old is None or at > old[1] or (at == old[1] and held < old[0]):
        p["p"][r["product_id"]] = [held, at]
    _seen(p, at)


def _feedback_submitted(p: Profile, r: dict[str, Any]) -> None:
    at = r["occurred_at"]
    items = p.setdefault("f", {})
    item = items.get(r["feedback_id"])
    if item is None:
        items[r["feedback_id"]] = [at, None, -1]
    elif item[0] is None or at < item[0]:
        item[0] = at
    _seen(p, at)


def _feedback_status(p: Profile, r: dict[str, Any]) -> None:
    # the bank's action, not the customer's: last seen does not move
    at = r["occurred_at"]
    status = r["status"]
    items = p.setdefault("f", {})
    item = items.get(r["feedback_id"])
    if item is None:
        items[r["feedback_id"]] = [None, status, at]
    elif at > item[2] or (at == item[2] and status > (item[1] or "")):
        item[1] = status
        item[2] = at


def _survey(p: Profile, r: dict[str, Any]) -> None:
    _latest(p.setdefault("s", {}), r["dimension"], r["score"], r["occurred_at"])
    _seen(p, r["occurred_at"])


def _consent(p: Profile, r: dict[str, Any]) -> None:
    at = r["occurred_at"]
    granted = 1 if r["granted"] else 0
    consents = p.setdefault("k", {})
    old = consents.get(r["consent"])
    # a withdrawal wins a tie: when in doubt, do not personalise
    if old is None or at > old[1] or (at == old[1] and granted < old[0]):
        consents[r["consent"]] = [granted, at]
    _seen(p, at)


def _security_flag(p: Profile, r: dict[str, Any]) -> None:
    # raised by the platform, not the customer: last seen does not move
    at = r["occurred_at"]
    rank = SEVERITY_RANK[r["severity"]]
    flags = p.get("x")
    if flags is None:
        p["x"] = [1, at, rank]
    else:
        flags[0] += 1
        flags[1] = max(flags[1], at)
        flags[2] = max(flags[2], rank)


def _access(p: Profile, r: dict[str, Any]) -> None:
    at = r["occurred_at"]
    action = r["action"]
    if action == "login_success" or action == "login_failure":
        logins = p.get("l")
        if logins is None:
            logins = p["l"] = [0, 0, -1]
        if action == "login_success":
            logins[0] += 1
            if at > logins[2]:
                logins[2] = at
        else:
            logins[1] += 1
    _seen(p, at)


def _recommendation(p: Profile, r: dict[str, Any]) -> None:
    counts = p.get("r")
    if counts is None:
        counts = p["r"] = [0, 0, 0, 0]
    counts[_RECO_SLOT[r["action"]]] += 1
    _seen(p, r["occurred_at"])


def _chat(p: Profile, r: dict[str, Any]) -> None:
    at = r["occurred_at"]
    chats = p.get("h")
    if chats is None:
        p["h"] = [1, at]
    else:
        chats[0] += 1
        chats[1] = max(chats[1], at)
    _seen(p, at)


def _registered(p: Profile, r: dict[str, Any]) -> None:
    # only the bank's classification: name, contacts and ids are PII and never read
    at = r["occurred_at"]
    new = [at, r["segment"], r["risk_profile"], r["customer_since"]]
    old = p.get("g")
    if old is None or new > old:
        p["g"] = new
    _seen(p, at)


#: key of the latest erasure time (named so that anyone scanning the changelog for what is
#: left of a customer recognises the erased-marker)
ERASED = "erased"


def _erasure(p: Profile, r: dict[str, Any]) -> None:
    """Right to erasure: only the erased-marker remains (offsets, version, erasure time).

    Events of the customer that occurred at or before ``erased`` are dropped from then on (the
    engine checks it), so a replay cannot bring the profile back; the version keeps counting so
    a profile rebuilt from later events never reuses a snapshot id.
    """
    at = r["occurred_at"]
    marker = {"o": p.get("o", {}), "v": p.get("v", 0), ERASED: max(p.get(ERASED, at), at)}
    p.clear()
    p.update(marker)


#: state keys of an erased-marker (no personal data)
MARKER_KEYS = frozenset({"o", "v", ERASED})


def has_profile(p: Profile) -> bool:
    """Whether ``p`` holds profile data (not just an erased-marker or nothing)."""
    return any(key not in MARKER_KEYS for key in p)


def erased_at(p: Profile) -> int | None:
    """The latest erasure time of the customer, ``None`` if never erased."""
    at: int | None = p.get(ERASED)
    return at


FOLDS: dict[str, Fold] = {
    "channel_interaction": fold_channel,
    "chat_session": _chat,
    "customer_registered": _registered,
    "feedback_submitted": _feedback_submitted,
    "feedback_status_changed": _feedback_status,
    "survey_response": _survey,
    "transaction": _transaction,
    "product_holding_changed": _product,
    "access_event": _access,
    "recommendation_feedback": _recommendation,
    "consent_changed": _consent,
    "erasure_requested": _erasure,
    "security_flag": _security_flag,
}
#: customer event types a profile is built from (topics the processor reads)
PROFILE_EVENTS: tuple[str, ...] = tuple(FOLDS)
#: event type (and internal merges) -> state keys its fold may change ("ls", "v", "o" aside)
TOUCHES: dict[str, tuple[str, ...]] = {
    "channel_interaction": ("c", "ir", "a"),
    "chat_session": ("h",),
    "customer_registered": ("g",),
    "feedback_submitted": ("f",),
    "feedback_status_changed": ("f",),
    "survey_response": ("s",),
    "transaction": ("t",),
    "product_holding_changed": ("p",),
    "access_event": ("l",),
    "recommendation_feedback": ("r",),
    "consent_changed": ("k",),
    "security_flag": ("x",),
    "profile_merges": ("a",),
}


def fold_event(p: Profile, name: str, record: dict[str, Any]) -> None:
    """Fold one (new, not yet applied) event into profile ``p`` in place."""
    FOLDS[name](p, record)
    p["v"] = p.get("v", 0) + 1


# -- identity stitching ----------------------------------------------------------------------


def anonymous_activity(anon: Profile) -> dict[str, Any]:
    """What a customer's profile takes from an anonymous id's state: channels, requests, seen."""
    activity: dict[str, Any] = {}
    for key in ("c", "ir", "ls"):
        if key in anon:
            activity[key] = anon[key]
    return activity


def note_link(p: Profile, anonymous_id: str) -> bool:
    """Record that this customer used ``anonymous_id``; True the first time (send a link)."""
    linked = p.setdefault("a", {})
    if anonymous_id in linked:
        return False
    linked[anonymous_id] = [0, None]
    return True


def merge_anonymous(p: Profile, anonymous_id: str, version: int, activity: dict[str, Any]) -> bool:
    """Take the cumulative ``activity`` of a linked anonymous id if newer; True if taken.

    Merges carry the anonymous id's whole activity with its version (events folded into it),
    so a duplicate, a replay or an older merge arriving late changes nothing.
    """
    linked = p.setdefault("a", {})
    old = linked.get(anonymous_id)
    if old is not None and old[0] >= version:
        return False
    linked[anonymous_id] = [version, activity]
    p["v"] = p.get("v", 0) + 1
    return True
