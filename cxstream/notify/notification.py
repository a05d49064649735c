"""What on-call receives, built from an ``alert`` or a ``security_flag`` event.

Both event types become one :class:`Notification`, so routing and channels handle one shape.
Security flags carry the clear principal and customer ids: they are pseudonymised here (unless
``settings.privacy.store_pii_in_clear``) so that no payload leaves with clear customer ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from cxstream.privacy import pseudonymise
from cxstream.settings import Settings

#: order of levels; acknowledging one suppresses the escalations above it
LEVELS: tuple[str, ...] = (
    "info",
    "warning",
    "breach",
    "escalation_1",
    "escalation_2",
    "escalation_3",
    "critical",
)
ESCALATIONS = frozenset({"escalation_1", "escalation_2", "escalation_3"})
_SEVERITY_LEVEL = {"low": "info", "medium": "warning", "high": "breach", "critical": "critical"}


def level_rank(level: str) -> int:
    return LEVELS.index(level)


@dataclass(frozen=True, slots=True)
class Notification:
    alert_id: str
    kind: str
    level: str
    department: str
    subject_id: str
    fired_at: int
    summary: str
    customer_pseudonym: str | None = None
    deadline_at: int | None = None
    late_ms: int = 0
    link: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)
    #: source event type (``alert`` or ``security_flag``)
    source: str = "alert"

    @property
    def subject_key(self) -> str:
        """What an acknowledgement applies to: the same item across its levels."""
        return f"{self.kind}:{self.subject_id}"

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["details"] = dict(self.details)
        return data


def from_alert(record: Mapping[str, Any]) -> Notification:
    return Notification(
        alert_id=record["alert_id"],
        kind=record["kind"],
        level=record["level"],
        department=record["department"],
        subject_id=record["subject_id"],
        fired_at=int(record["fired_at"]),
        summary=record["summary"],
        customer_pseudonym=record.get("customer_pseudonym"),
        deadline_at=record.get("deadline_at"),
        late_ms=int(record.get("late_ms") or 0),
        link=record.get("link"),
        details=dict(record.get("details") or {}),
        source="alert",
    )


def from_security_flag(record: Mapping[str, Any], settings: Settings) -> Notification:
    def hide(value: str | None) -> str | None:
        if value is None or settings.privacy.store_pii_in_clear:
            return value
        return pseudonymise(value, settings, pii_class="customer_id")

    principal = hide(record["principal_id"]) or ""
    details = {
        "severity": record["severity"],
        "rule": record["rule"],
        "principal_type": record["principal_type"],
        "explanation": record["explanation"],
        "evidence_events": str(len(record.get("evidence_event_ids") or ())),
    }
    if record.get("score") is not None:
        details["score"] = f"{record['score']:.3f}"
    return Notification(
        alert_id=record["flag_id"],
        kind="security",
        level=_SEVERITY_LEVEL[record["severity"]],
        department="risk_control",
        subject_id=principal,
        fired_at=int(record["occurred_at"]),
        summary=f"{record['severity']} security flag {record['rule']} on "
        f"{record['principal_type']} {principal}",
        customer_pseudonym=hide(record.get("customer_id")),
        details=details,
        source="security_flag",
    )


def from_event(name: str, record: Mapping[str, Any], settings: Settings) -> Notification:
    if name == "alert":
        return from_alert(record)
    if name == "security_flag":
        return from_security_flag(record, settings)
    raise ValueError(f"notify: event type {name!r} is neither alert nor security_flag")
