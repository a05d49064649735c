"""Rule-based segment of a profile view (first matching rule wins).

Only event-derived attributes are used (no wall clock), so a segment is reproducible from the
events alone.

>>> segment({"security_flags": {"count": 1}})
'security_watch'
>>> segment({"channels": {"web": {"count": 4}, "app": {"count": 2}}})
'digital_first'
"""

from __future__ import annotations

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
    if (view.get("security_flags") or {}).get("count", 0) > 0:
        return "security_watch"
    scores = (view.get("survey_scores") or {}).values()
    if view.get("open_feedback", 0) >= OPEN_FEEDBACK_AT_RISK or any(s < LOW_SCORE for s in scores):
        return "at_risk"
    channels = view.get("channels") or {}
    total = sum(entry["count"] for entry in channels.values())
    if total < MIN_INTERACTIONS:
        if total == 0 and not (view.get("transactions") or {}).get("count"):
            return "new"
    else:
        online = sum(channels[c]["count"] for c in ONLINE_CHANNELS if c in channels)
        share = online / total
        if share >= DIGITAL_SHARE:
            return "digital_first"
        if share < BRANCH_SHARE:
            return "branch_reliant"
    registration = view.get("registration") or {}
    if registration.get("bank_segment") in PREMIUM_BANK_SEGMENTS:
        return "premium"
    return "mainstream"
