"""Rule-based segment of a profile view (first matching rule wins).

Only event-derived attributes are used (no wall clock), so a segment is reproducible from the
events alone.

>>> segment({"security_flags": {"count": 1}})
'security_watch'
>>> segment({"channels": {"web": {"count": 4}, "app": {"count": 2}}})
'digital_first'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sinks.clickhouse.tables import ONLINE_CHANNELS

#: a latest survey score below this marks a customer at risk
LOW_SCORE = 60
#: open feedback items from which a customer is at risk
OPEN_FEEDBACK_AT_RISK = 2
#: interactions needed before the channel mix says anything
MIN_INTERACTIONS = 5
DIGITAL_SHARE = 0.8
BRANCH_SHARE = 0.4
PREMIUM_BANK_SEGMENTS = frozenset({"private", "affluent"})
SEGMENTS = (
    "security_watch",
    "at_risk",
    "new",
    "digital_first",
    "branch_reliant",
    "premium",
    "mainstream",
)


def segment(view: dict[str, Any]) -> str:
    """The segment of a profile view (:func:`processors.profiles.view.profile_view`)."""
    channels = view.get("channels") or {}
    registration = view.get("registration") or {}
    return segment_of(
        (view.get("security_flags") or {}).get("count", 0),
        (view.get("survey_scores") or {}).values(),
        view.get("open_feedback", 0),
        {name: entry["count"] for name, entry in channels.items()},
        (view.get("transactions") or {}).get("count") or 0,
        registration.get("bank_segment"),
    )


def segment_of(
    security_flags: int,
    survey_scores: Iterable[int],
    open_feedback: int,
    channel_counts: Mapping[str, int],
    transactions: int,
    bank_segment: str | None,
) -> str:
    """The rule itself, on the parts of a profile it reads (the publisher computes them from
    the stored state without building a view first).

    >>> segment_of(0, [], 0, {"branch": 5}, 0, None)
    'branch_reliant'
    """
    if security_flags > 0:
        return "security_watch"
    if open_feedback >= OPEN_FEEDBACK_AT_RISK or any(s < LOW_SCORE for s in survey_scores):
        return "at_risk"
    total = sum(channel_counts.values())
    if total < MIN_INTERACTIONS:
        if total == 0 and not transactions:
            return "new"
    else:
        online = sum(channel_counts[c] for c in ONLINE_CHANNELS if c in channel_counts)
        share = online / total
        if share >= DIGITAL_SHARE:
            return "digital_first"
        if share < BRANCH_SHARE:
            return "branch_reliant"
    if bank_segment in PREMIUM_BANK_SEGMENTS:
        return "premium"
    return "mainstream"
