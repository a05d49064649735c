"""A new device, first seen from a new city, followed by a sensitive action within the window.

A device is *known* once it was enrolled (a ``device_change`` event, which the bank verifies
with a one-time code), first appeared in a city the principal was already seen in, or stayed
quiet for the window. Until the principal has ``new_device_min_history`` successful logins,
its devices and cities are only learned (cold start: the baseline).
A device first seen from a new city is *pending*; a sensitive action (``sensitive_actions``)
from it within the window completes the pattern, as does a sensitive action in the device's
very first event.

State: ``nd_dev`` known devices, ``nd_city`` known cities (both bounded, most recent last),
``nd_logins`` successful logins seen, ``nd_new`` pending devices ``[[ts, device, event_id], ...]``.
"""

from __future__ import annotations

from processors.security.access import Access
from processors.security.rules.base import Env, Finding, State, prune, remember

RULE = "new_device_sensitive_action"


def applies(principal_type: str, action: str) -> bool:
    return principal_type == "customer" and action != "login_failure"


def evaluate(state: State, event: Access, env: Env) -> Finding | None:
    if event.principal_type != "customer" or event.device is None:
        return None
    if event.action == "login_failure":
        return None  # unauthenticated: neither a baseline nor an action of the customer
    cfg = env.config
    window_ms = int(cfg.new_device_window_seconds * 1000)
    known: list[str] = state.setdefault("nd_dev", [])
    cities: list[str] = state.setdefault("nd_city", [])
    pending: list[list[object]] = state.setdefault("nd_new", [])
    # devices pending for longer than the window have become ordinary known devices
    prune(pending, event.ts - window_ms)
    device, city = event.device, event.city
    sensitive = event.action in cfg.sensitive_actions
    finding: Finding | None = None
    opened = next((entry for entry in pending if entry[1] == device), None)
    if opened is not None:
        if sensitive:
            finding = _finding(event, [str(opened[2]), event.event_id], cfg.sensitive_actions)
    elif device not in known:
        # judged only against a baseline of a few sessions (cold start: history too short)
        first_sight = state.get("nd_logins", 0) < env.config.new_device_min_history
        new_city = city is not None and bool(cities) and city not in cities
        if new_city and not first_sight:
            if sensitive:
                finding = _finding(event, [event.event_id], cfg.sensitive_actions)
            else:
                pending.append([event.ts, device, event.event_id])
        remember(known, device, cfg.max_known_devices)
    elif event.action == "device_change":
        remember(known, device, cfg.max_known_devices)
    if city is not None:
        remember(cities, city, cfg.max_known_cities)
    if event.action == "login_success":
        state["nd_logins"] = state.get("nd_logins", 0) + 1
    return finding


def _finding(event: Access, evidence: list[str], actions: tuple[str, ...]) -> Finding:
    return Finding(
        rule=RULE,
        severity="high",
        explanation=(
            f"{event.action} from a device first seen minutes before in a city new for this "
            f"customer ({event.city or '?'}); sensitive actions: {', '.join(actions)}"
        ),
        evidence=evidence,
        anchor=evidence[0],
        customer_id=event.principal,
    )
