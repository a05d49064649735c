"""Staff bulk access: far more distinct customers viewed or exported than the baseline.

Within ``bulk_window_seconds`` a staff member's distinct target customers must reach the
floor ``bulk_min_distinct`` and ``bulk_baseline_ratio`` x the reference: their own baseline
once it covers ``bulk_baseline_min_hours`` active hours, else their team's (the team members
whose events share this partition, a sample of the team). Baselines are moving averages of
distinct customers per active clock hour (hours without activity do not drag them down).

State: ``bk_w`` window ``[[ts, customer, event_id], ...]``, ``bk_h`` current hour bucket and
its distinct customers ``[hour, [customer, ...]]``, ``bk_base`` / ``bk_hours`` own baseline.
"""

from __future__ import annotations

from processors.security.access import Access
from processors.security.rules.base import Env, Finding, State, prune

RULE = "staff_bulk_access"
ACTIONS = frozenset({"record_view", "record_export"})
HOUR_MS = 3_600_000
#: weight of the newest hour in the moving averages
ALPHA = 0.2


def applies(principal_type: str, action: str) -> bool:
    return principal_type == "staff" and action in ACTIONS


def evaluate(state: State, event: Access, env: Env) -> Finding | None:
    if event.principal_type != "staff" or event.action not in ACTIONS or not event.target:
        return None
    cfg = env.config
    team = env.team(event.team or "?")
    _roll_hour(state, team, event.ts // HOUR_MS)
    hour_targets: list[str] = state["bk_h"][1]
    if event.target not in hour_targets:
        hour_targets.append(event.target)
    window: list[list[object]] = state.setdefault("bk_w", [])
    prune(window, event.ts - int(cfg.bulk_window_seconds * 1000))
    window.append([event.ts, event.target, event.event_id])
    if len(window) < cfg.bulk_min_distinct:
        return None  # fewer accesses than the floor: fewer distinct customers too (no set)
    distinct = len({entry[1] for entry in window})
    if distinct < cfg.bulk_min_distinct:
        return None
    own_hours = state.get("bk_hours", 0)
    if own_hours >= cfg.bulk_baseline_min_hours:
        reference, source = state["bk_base"], "own"
    elif team["hours"] >= cfg.bulk_baseline_min_hours:
        reference, source = team["base"], "team"
    else:
        reference, source = 0.0, "none yet"
    threshold = max(cfg.bulk_min_distinct, cfg.bulk_baseline_ratio * reference)
    if distinct < threshold:
        return None
    ids = [str(entry[2]) for entry in window]
    return Finding(
        rule=RULE,
        severity="critical",
        explanation=(
            f"{distinct} distinct customers viewed/exported within "
            f"{cfg.bulk_window_seconds / 60:g} min; baseline ({source}) {reference:.1f} per "
            f"active hour, threshold {threshold:.0f} (floor {cfg.bulk_min_distinct}, "
            f"{cfg.bulk_baseline_ratio:g}x baseline); team {event.team or '?'}"
        ),
        evidence=ids,
        anchor=ids[0],
        figures={"distinct": float(distinct), "baseline": round(reference, 2)},
    )


def _roll_hour(state: State, team: State, hour: int) -> None:
    """Close the previous active hour into the own and team baselines when a new one starts."""
    current = state.get("bk_h")
    if current is None:
        state["bk_h"] = [hour, []]
        return
    if hour <= current[0]:
        return
    n = len(current[1])
    for target in (state, team):
        hours_key, base_key = ("bk_hours", "bk_base") if target is state else ("hours", "base")
        seen = target.get(hours_key, 0)
        base = target.get(base_key, 0.0)
        target[base_key] = float(n) if seen == 0 else base + ALPHA * (n - base)
        target[hours_key] = seen + 1
    state["bk_h"] = [hour, []]
