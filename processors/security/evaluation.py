"""Detection quality of flags against the simulator's ground-truth labels.

A flag *detects* a label when they share an evidence event id. Per scenario type: recall =
labels detected by any flag / labels (complete ones only), precision = flags of that type's rule
that detect some label / flags of that rule (a brute-force break-in also caught by
impossible_travel counts as a true impossible_travel detection). False flags = flags detecting
no label, per 10,000 benign logins (login attempts in no label).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from processors.security.access import LOGIN_ACTIONS


def benign_logins(records: Iterable[Mapping[str, Any]], labelled: set[str]) -> int:
    """Login attempts (success or failure) that belong to no injected scenario."""
    return sum(1 for r in records if r["action"] in LOGIN_ACTIONS and r["event_id"] not in labelled)


def evaluate(
    flags: Sequence[Mapping[str, Any]],
    labels: Sequence[Mapping[str, Any]],
    *,
    benign_login_count: int,
) -> dict[str, Any]:
    """Flat figures: ``<type>.recall``, ``<rule>.precision``, ``false_flags_per_10k_logins``..."""
    owner: dict[str, int] = {}
    for index, label in enumerate(labels):
        for event_id in label["event_ids"]:
            owner[event_id] = index
    detected: set[int] = set()
    by_rule: dict[str, list[int]] = {}
    false_flags: list[Mapping[str, Any]] = []
    for flag in flags:
        hits = {owner[e] for e in flag["evidence_event_ids"] if e in owner}
        detected |= hits
        counts = by_rule.setdefault(flag["rule"], [0, 0])
        counts[0] += 1
        counts[1] += bool(hits)
        if not hits:
            false_flags.append(flag)
    figures: dict[str, Any] = {}
    types = sorted({label["scenario"] for label in labels} | set(by_rule))
    for name in types:
        complete = [
            i for i, label in enumerate(labels) if label["scenario"] == name and label["complete"]
        ]
        if complete:
            figures[f"{name}.labels"] = len(complete)
            figures[f"{name}.recall"] = round(
                sum(i in detected for i in complete) / len(complete), 4
            )
        raised, true = by_rule.get(name, (0, 0))
        figures[f"{name}.flags"] = raised
        if raised:
            figures[f"{name}.precision"] = round(true / raised, 4)
    figures["flags"] = len(flags)
    figures["false_flags"] = len(false_flags)
    figures["benign_logins"] = benign_login_count
    figures["false_flags_per_10k_logins"] = round(
        len(false_flags) * 10_000 / max(benign_login_count, 1), 3
    )
    return figures
