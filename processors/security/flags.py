"""Rules' findings and the model's score -> ``security_flag`` records.

- **Suppression**: a (state owner, rule) raises at most one flag per ``suppression_seconds`` of
  event time; the owner is the principal (or, for credential stuffing, the ip/device key). The
  suppression end is kept in the owner's state (``sup``), so a replay suppresses the same way.
- **Idempotency**: ``flag_id`` is a UUIDv5 of (principal, rule, anchor event), the anchor being
  the event that opened the pattern; the flag's ``event_id`` derives from it. A replay that
  re-emits a flag (crash after the send, before the state write) sends the same ids, which the
  sink (ReplacingMergeTree on event_id) and receivers dedupe.
- **Score**: the model's score of the completing event rides on every flag; a score at or above
  ``anomaly_threshold`` raises the severity one level, and alone (no rule fired, model warmed up)
  it raises an ``anomaly_score`` flag naming the features that drove it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from cxstream.settings import SecuritySettings
from processors.security.access import Access
from processors.security.rules.base import Finding, State

ANOMALY_RULE = "anomaly_score"
SEVERITIES = ("low", "medium", "high", "critical")
_NAMESPACE = uuid.UUID("6f1d8d2c-4f3e-5a7b-9c1d-2e3f4a5b6c7d")


def flag_id(principal: str, rule: str, anchor: str) -> str:
    """Deterministic id of the flag of ``rule`` on ``principal`` opened by event ``anchor``."""
    return str(uuid.uuid5(_NAMESPACE, f"{principal}\x1f{rule}\x1f{anchor}"))


def suppressed(state: State, rule: str, ts: int) -> bool:
    until = (state.get("sup") or {}).get(rule)
    return until is not None and ts < until


def suppress(state: State, rule: str, ts: int, config: SecuritySettings) -> None:
    state.setdefault("sup", {})[rule] = ts + int(config.suppression_seconds * 1000)


def anomaly_finding(
    event: Access, score: float, drivers: Sequence[tuple[str, float]], features: dict[str, float]
) -> Finding:
    named = ", ".join(f"{name}={features[name]:.2f} (+{drop:.2f})" for name, drop in drivers)
    return Finding(
        rule=ANOMALY_RULE,
        severity="medium",
        explanation=f"anomaly score {score:.3f} for {event.action}; driven by {named or 'n/a'}",
        evidence=[event.event_id],
        anchor=event.event_id,
        customer_id=event.principal if event.principal_type == "customer" else event.target,
    )


def build_flag(
    finding: Finding,
    event: Access,
    config: SecuritySettings,
    *,
    score: float | None = None,
    drivers: Sequence[tuple[str, float]] = (),
) -> dict[str, Any]:
    """The ``security_flag`` record of ``finding`` completed by ``event``."""
    severity = finding.severity
    explanation = finding.explanation
    if score is not None and finding.rule != ANOMALY_RULE:
        if score >= config.anomaly_threshold:
            severity = SEVERITIES[min(SEVERITIES.index(severity) + 1, len(SEVERITIES) - 1)]
        explanation += f"; anomaly score {score:.3f}"
        if drivers:
            explanation += " (" + ", ".join(name for name, _ in drivers) + ")"
    fid = flag_id(event.principal, finding.rule, finding.anchor)
    evidence = finding.evidence[-config.max_evidence :]
    return {
        "event_id": str(uuid.uuid5(_NAMESPACE, f"flag\x1f{fid}")),
        "occurred_at": event.ts,
        "flag_id": fid,
        "principal_id": event.principal,
        "principal_type": event.principal_type,
        "customer_id": finding.customer_id,
        "severity": severity,
        "rule": finding.rule,
        "score": None if score is None else round(score, 4),
        "explanation": explanation,
        "evidence_event_ids": evidence,
    }
