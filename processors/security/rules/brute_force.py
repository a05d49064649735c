"""Brute force: ``brute_force_failures`` failed logins of one principal within the window.

State ``bf``: ``[[ts, event_id], ...]`` of the failures inside the window.
"""

from __future__ import annotations

from processors.security.access import Access
from processors.security.rules.base import Env, Finding, State, prune

RULE = "brute_force"


def applies(principal_type: str, action: str) -> bool:
    return action == "login_failure"


def evaluate(state: State, event: Access, env: Env) -> Finding | None:
    if event.action != "login_failure":
        return None
    cfg = env.config
    window_ms = int(cfg.brute_force_window_seconds * 1000)
    failures: list[list[object]] = state.setdefault("bf", [])
    prune(failures, event.ts - window_ms)
    failures.append([event.ts, event.event_id])
    if len(failures) < cfg.brute_force_failures:
        return None
    ids = [str(entry[1]) for entry in failures]
    minutes = (event.ts - int(str(failures[0][0]))) / 60_000
    return Finding(
        rule=RULE,
        severity="high",
        explanation=(
            f"{len(ids)} failed logins within {minutes:.1f} min (threshold "
            f"{cfg.brute_force_failures} within {cfg.brute_force_window_seconds / 60:g} min)"
        ),
        evidence=ids,
        anchor=ids[0],
        customer_id=event.principal if event.principal_type == "customer" else None,
        figures={"failures": float(len(ids)), "minutes": round(minutes, 2)},
    )
