"""The public shape of a profile: what Redis, the web view and ``profile_snapshot`` show.

:func:`profile_view` turns the compact stored state (:mod:`processors.profiles.fold`) into
named top-level attributes, merging in the activity of linked anonymous ids. Attributes that
depend on the present (ages) are not stored; readers add them (:func:`with_ages`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from hashlib import sha1
from typing import Any

from processors.profiles.fold import CLOSED_STATUSES, ERASED, SEVERITIES, Profile
from processors.profiles.segment import segment_of

#: attributes of every view, in order (the Redis hash fields besides version/updated_at)
ATTRIBUTES: tuple[str, ...] = (
    "customer_id",
    "channels",
    "preferred_channel",
    "last_seen_at",
    "info_requests_online",
    "info_requests_offline",
    "transactions",
    "products",
    "open_feedback",
    "oldest_open_feedback_at",
    "survey_scores",
    "consents",
    "personalisation_opt_out",
    "security_flags",
    "logins",
    "recommendations",
    "chats",
    "registration",
    "erasure_requested_at",
    "linked_anonymous_ids",
    "segment",
)
#: stored state key -> the view attributes computed from it
ATTRIBUTES_OF: dict[str, tuple[str, ...]] = {
    "c": ("channels", "preferred_channel"),
    "ir": ("info_requests_online", "info_requests_offline"),
    "ls": ("last_seen_at",),
    "a": (
        "channels",
        "preferred_channel",
        "info_requests_online",
        "info_requests_offline",
        "last_seen_at",
        "linked_anonymous_ids",
    ),
    "t": ("transactions",),
    "p": ("products",),
    "f": ("open_feedback", "oldest_open_feedback_at"),
    "s": ("survey_scores",),
    "k": ("consents", "personalisation_opt_out"),
    "x": ("security_flags",),
    "l": ("logins",),
    "r": ("recommendations",),
    "h": ("chats",),
    "g": ("registration",),
    ERASED: ("erasure_requested_at",),
}
#: attributes that may change with any event (segment reads several parts of the view)
ALWAYS: tuple[str, ...] = ("last_seen_at", "segment")
_RECO_ACTIONS = ("impression", "click", "convert", "dismiss")
_SNAPSHOT_NS = uuid.UUID("6f1f7a52-3c2e-4d59-9b0e-6c1d2b7c9a10")
_NS_BYTES = _SNAPSHOT_NS.bytes


def snapshot_id(customer_id: str, version: int) -> str:
    """``str(uuid.uuid5(namespace, "<customer id>:<version>"))`` without building UUID objects
    (it is computed for every published profile).

    >>> import uuid
    >>> snapshot_id("C1", 7) == str(uuid.uuid5(_SNAPSHOT_NS, "C1:7"))
    True
    """
    # SHA-1 is what UUIDv5 is defined with (an identifier, not a security use)
    name = _NS_BYTES + f"{customer_id}:{version}".encode()
    digest = bytearray(sha1(name, usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _channels(p: Profile) -> tuple[dict[str, list[int]], list[int], int | None]:
    """Channel counts, requests and last seen of the customer plus linked anonymous ids
    (read-only: without linked ids they are the state's own containers, not copies)."""
    linked = p.get("a")
    if not linked:
        return p.get("c") or {}, p.get("ir") or [0, 0], p.get("ls")
    channels = {name: list(entry) for name, entry in (p.get("c") or {}).items()}
    requests = list(p.get("ir") or (0, 0))
    seen = p.get("ls")
    for _, activity in linked.values():
        if not activity:
            continue
        for name, (count, last) in (activity.get("c") or {}).items():
            entry = channels.get(name)
            if entry is None:
                channels[name] = [count, last]
            else:
                entry[0] += count
                entry[1] = max(entry[1], last)
        anon_requests = activity.get("ir")
        if anon_requests:
            requests[0] += anon_requests[0]
            requests[1] += anon_requests[1]
        anon_seen = activity.get("ls")
        if anon_seen is not None and (seen is None or anon_seen > seen):
            seen = anon_seen
    return channels, requests, seen


def touched_attributes(state_keys: tuple[str, ...]) -> frozenset[str]:
    """The view attributes that changes of ``state_keys`` can change (plus :data:`ALWAYS`)."""
    names = set(ALWAYS)
    for key in state_keys:
        names.update(ATTRIBUTES_OF[key])
    return frozenset(names)


def preferred_channel(channels: dict[str, list[int]]) -> str | None:
    """Most used channel; ties: the most recently used, then the name."""
    if not channels:
        return None
    return max(channels.items(), key=lambda item: (item[1][0], item[1][1], item[0]))[0]


def _transactions(p: Profile) -> dict[str, Any]:
    by_category: dict[str, dict[str, Any]] = {}
    count = 0
    last = None
    for key, (n, total, at) in sorted((p.get("t") or {}).items()):
        category, currency = key.rsplit("|", 1)
        entry = by_category.get(category)
        if entry is None:
            entry = by_category[category] = {
                "count": 0,
                "last_at": at,
                "sum_minor": {},
                "avg_minor": {},
            }
        entry["count"] += n
        entry["last_at"] = max(entry["last_at"], at)
        entry["sum_minor"][currency] = total
        entry["avg_minor"][currency] = round(total / n, 2)
        count += n
        last = at if last is None else max(last, at)
    return {"count": count, "last_at": last, "by_category": by_category}


def profile_view(customer_id: str, p: Profile) -> dict[str, Any]:
    """Every attribute of :data:`ATTRIBUTES` for stored profile ``p`` (the parts several
    attributes share computed once; :func:`view_attributes` computes a few of them)."""
    channels, requests, seen = _channels(p)
    open_at = _open_feedback_at(p)
    consents = _consents(p)
    return {
        "customer_id": customer_id,
        "channels": _channel_view(channels),
        "preferred_channel": preferred_channel(channels),
        "last_seen_at": seen,
        "info_requests_online": requests[0],
        "info_requests_offline": requests[1],
        "transactions": _transactions(p),
        "products": _products(p),
        "open_feedback": len(open_at),
        "oldest_open_feedback_at": min(open_at, default=None),
        "survey_scores": _survey_scores(p),
        "consents": consents,
        "personalisation_opt_out": consents.get("personalisation") is False,
        "security_flags": _security_flags(p),
        "logins": _logins(p),
        "recommendations": _recommendations(p),
        "chats": _chats(p),
        "registration": _registration(p),
        "erasure_requested_at": p.get(ERASED),
        "linked_anonymous_ids": len(p.get("a") or ()),
        "segment": _segment(p, {name: entry[0] for name, entry in channels.items()}, len(open_at)),
    }


def _channel_view(channels: dict[str, list[int]]) -> dict[str, dict[str, int]]:
    return {
        name: {"count": entry[0], "last_at": entry[1]} for name, entry in sorted(channels.items())
    }


def _products(p: Profile) -> list[str]:
    return sorted(pid for pid, entry in (p.get("p") or {}).items() if entry[0])


def _recommendations(p: Profile) -> dict[str, int]:
    return dict(zip(_RECO_ACTIONS, p.get("r") or (0, 0, 0, 0), strict=True))


#: attributes computed from the merged channel activity (see :func:`_channels`)
_CHANNEL_ATTRIBUTES = frozenset(
    ("channels", "preferred_channel", "last_seen_at", "info_requests_online",
     "info_requests_offline")
)  # fmt: skip


def _open_feedback_at(p: Profile) -> list[int]:
    return [
        item[0]
        for item in (p.get("f") or {}).values()
        if item[0] is not None and item[1] not in CLOSED_STATUSES
    ]


def _consents(p: Profile) -> dict[str, bool]:
    return {kind: bool(entry[0]) for kind, entry in sorted((p.get("k") or {}).items())}


def _security_flags(p: Profile) -> dict[str, Any]:
    flags = p.get("x")
    return {
        "count": flags[0] if flags else 0,
        "last_at": flags[1] if flags else None,
        "max_severity": SEVERITIES[flags[2]] if flags else None,
    }


def _logins(p: Profile) -> dict[str, Any]:
    logins = p.get("l")
    return {
        "success": logins[0] if logins else 0,
        "failure": logins[1] if logins else 0,
        "last_at": logins[2] if logins and logins[2] >= 0 else None,
    }


def _chats(p: Profile) -> dict[str, Any]:
    chats = p.get("h")
    return {"count": chats[0] if chats else 0, "last_at": chats[1] if chats else None}


def _registration(p: Profile) -> dict[str, Any] | None:
    registration = p.get("g")
    if not registration:
        return None
    return {
        "bank_segment": registration[1],
        "risk_profile": registration[2],
        "customer_since": registration[3],
    }


def _survey_scores(p: Profile) -> dict[str, int]:
    return {dim: entry[0] for dim, entry in sorted((p.get("s") or {}).items())}


def _segment(p: Profile, channel_counts: dict[str, int], open_feedback: int) -> str:
    flags = p.get("x")
    registration = p.get("g")
    transactions = p.get("t")
    return segment_of(
        flags[0] if flags else 0,
        [entry[0] for entry in (p.get("s") or {}).values()],
        open_feedback,
        channel_counts,
        sum(entry[0] for entry in transactions.values()) if transactions else 0,
        registration[1] if registration else None,
    )


#: attribute -> its value from a stored profile (attributes of the channel activity and the
#: segment are computed apart: they share the merge of linked anonymous activity)
_ATTRIBUTE_OF: dict[str, Any] = {
    "customer_id": None,  # the key, not stored
    "transactions": _transactions,
    "products": _products,
    "open_feedback": lambda p: len(_open_feedback_at(p)),
    "oldest_open_feedback_at": lambda p: min(_open_feedback_at(p), default=None),
    "survey_scores": _survey_scores,
    "consents": _consents,
    "personalisation_opt_out": lambda p: _consents(p).get("personalisation") is False,
    "security_flags": _security_flags,
    "logins": _logins,
    "recommendations": _recommendations,
    "chats": _chats,
    "registration": _registration,
    "erasure_requested_at": lambda p: p.get(ERASED),
    "linked_anonymous_ids": lambda p: len(p.get("a") or ()),
}


def view_attributes(customer_id: str, p: Profile, names: Iterable[str]) -> dict[str, Any]:
    """Attributes ``names`` of the view of ``p`` (as :func:`profile_view` has them), computing
    only those: a publication of a few changed attributes does not build the whole view."""
    view: dict[str, Any] = {}
    channels: dict[str, list[int]] | None = None
    for name in names:
        if name in _CHANNEL_ATTRIBUTES or name == "segment":
            if channels is None:
                channels, requests, seen = _channels(p)
            if name == "channels":
                view[name] = _channel_view(channels)
            elif name == "preferred_channel":
                view[name] = preferred_channel(channels)
            elif name == "last_seen_at":
                view[name] = seen
            elif name == "info_requests_online":
                view[name] = requests[0]
            elif name == "info_requests_offline":
                view[name] = requests[1]
            else:
                counts = {channel: entry[0] for channel, entry in channels.items()}
                view[name] = _segment(p, counts, len(_open_feedback_at(p)))
        elif name == "customer_id":
            view[name] = customer_id
        else:
            view[name] = _ATTRIBUTE_OF[name](p)
    return view


def snapshot_of(customer_id: str, p: Profile, version: int, now_ms: int) -> dict[str, Any]:
    """The ``profile_snapshot`` event of stored profile ``p`` (what :func:`snapshot_record`
    makes of its view, computed from the state directly: publishing does it per customer)."""
    channels, requests, seen = _channels(p)
    counts = {name: entry[0] for name, entry in sorted(channels.items())}
    open_at = _open_feedback_at(p)
    transactions = (p.get("t") or {}).values()
    flags = p.get("x")
    return {
        "event_id": snapshot_id(customer_id, version),
        "occurred_at": now_ms,
        "customer_id": customer_id,
        "version": version,
        "channel_counts": counts,
        "preferred_channel": preferred_channel(channels),
        "last_seen_at": seen,
        "info_requests_online": requests[0],
        "info_requests_offline": requests[1],
        "transaction_count": sum(entry[0] for entry in transactions),
        "transaction_sum_minor": sum(entry[1] for entry in transactions),
        "products": _products(p),
        "open_feedback": len(open_at),
        "oldest_open_feedback_at": min(open_at, default=None),
        "survey_scores": _survey_scores(p),
        "consents": _consents(p),
        "segment": _segment(p, counts, len(open_at)),
        "security_flags": flags[0] if flags else 0,
    }


#: view attributes a snapshot holds as they are (a publication takes them from there)
_IN_SNAPSHOT = frozenset(
    ("customer_id", "preferred_channel", "last_seen_at", "info_requests_online",
     "info_requests_offline", "products", "open_feedback", "oldest_open_feedback_at",
     "survey_scores", "consents", "segment")
)  # fmt: skip


def publication(
    customer_id: str, p: Profile, names: frozenset[str] | None, version: int, now_ms: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What publishing ``p`` sends: the view attributes ``names`` (``None``: every one) for
    Redis, and the ``profile_snapshot`` event; each part computed once for both."""
    if names is None:
        view = profile_view(customer_id, p)
        return view, snapshot_record(view, version, now_ms)
    snapshot = snapshot_of(customer_id, p, version, now_ms)
    view = {name: snapshot[name] for name in names & _IN_SNAPSHOT}
    rest = names - _IN_SNAPSHOT
    if "personalisation_opt_out" in rest:
        view["personalisation_opt_out"] = snapshot["consents"].get("personalisation") is False
        rest = rest - {"personalisation_opt_out"}
    if rest:
        view.update(view_attributes(customer_id, p, rest))
    return view, snapshot


def with_ages(view: dict[str, Any], now_ms: int | None = None) -> dict[str, Any]:
    """``view`` plus attributes that depend on the present (computed at read time)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    oldest = view.get("oldest_open_feedback_at")
    return {
        **view,
        "oldest_open_feedback_age_seconds": None if oldest is None else (now_ms - oldest) / 1000,
    }


def snapshot_record(view: dict[str, Any], version: int, now_ms: int) -> dict[str, Any]:
    """The ``profile_snapshot`` event of a view (event id stable per customer and version)."""
    customer_id = view["customer_id"]
    return {
        "event_id": snapshot_id(customer_id, version),
        "occurred_at": now_ms,
        "customer_id": customer_id,
        "version": version,
        "channel_counts": {name: entry["count"] for name, entry in view["channels"].items()},
        "preferred_channel": view["preferred_channel"],
        "last_seen_at": view["last_seen_at"],
        "info_requests_online": view["info_requests_online"],
        "info_requests_offline": view["info_requests_offline"],
        "transaction_count": view["transactions"]["count"],
        "transaction_sum_minor": sum(
            total
            for entry in view["transactions"]["by_category"].values()
            for total in entry["sum_minor"].values()
        ),
        "products": view["products"],
        "open_feedback": view["open_feedback"],
        "oldest_open_feedback_at": view["oldest_open_feedback_at"],
        "survey_scores": view["survey_scores"],
        "consents": view["consents"],
        "segment": view["segment"],
        "security_flags": view["security_flags"]["count"],
    }
