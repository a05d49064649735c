"""Off-hours staff access: staff activity outside office hours in the bank's time zone.

Teams staffed around the clock (``round_the_clock_teams``) and service automation
(``auth_method == "api_key"``) are never off hours. A single look-up (a colleague covering a
late customer) is not a pattern: ``off_hours_min_events`` off-hours accesses within
``off_hours_window_seconds`` are. State ``oh``: ``[[ts, event_id], ...]`` of off-hours accesses
in the window; suppression keeps it to one flag per staff member and suppression window.
"""

from __future__ import annotations

from processors.security.access import Access
from processors.security.rules.base import Env, Finding, State, prune

RULE = "off_hours_staff"


def applies(principal_type: str, action: str) -> bool:
    return principal_type == "staff"


def evaluate(state: State, event: Access, env: Env) -> Finding | None:
    if event.principal_type != "staff" or event.auth_method == "api_key":
        return None
    cfg = env.config
    if event.team in cfg.round_the_clock_teams:
        return None
    weekday, hour = env.local_time(event.ts)
    if weekday in cfg.office_weekdays and cfg.office_start_hour <= hour < cfg.office_end_hour:
        return None
    window: list[list[object]] = state.setdefault("oh", [])
    prune(window, event.ts - int(cfg.off_hours_window_seconds * 1000))
    window.append([event.ts, event.event_id])
    if len(window) < cfg.off_hours_min_events:
        return None
    ids = [str(entry[1]) for entry in window]
    return Finding(
        rule=RULE,
        severity="medium",
        explanation=(
            f"{len(ids)} staff accesses off hours, the last ({event.action}) at {hour:02d}h "
            f"local on weekday {weekday} ({cfg.timezone}); "
            f"office hours {cfg.office_start_hour:02d}-{cfg.office_end_hour:02d}h on weekdays "
            f"{','.join(map(str, cfg.office_weekdays))} (team {event.team or '?'})"
        ),
        evidence=ids,
        anchor=ids[0],
        customer_id=event.target,
        figures={"hour": float(hour), "weekday": float(weekday)},
    )
