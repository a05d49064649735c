"""Credential stuffing: one ip or one device failing logins on many accounts.

``access_event`` is keyed by principal, so the failures of one address are spread over every
partition. The security processor re-keys each failed login by ``ip:<pseudonym>`` and by
``dev:<device>`` onto an internal topic (:data:`NETWORK_TOPIC`), so all failures of one network
identity meet in one partition, where this rule keeps their window.

State (per network key) ``cs``: ``[[ts, principal, event_id], ...]`` within the window.
"""

from __future__ import annotations

from processors.security.access import Access
from processors.security.rules.base import Env, Finding, State, prune
from streams.topics import SECURITY_LOGIN_FAILURES

RULE = "credential_stuffing"
#: logical name of the internal topic of failed logins keyed by ip pseudonym / device
NETWORK_TOPIC = SECURITY_LOGIN_FAILURES


def network_keys(event: Access) -> list[str]:
    """The keys a failed login is re-keyed by (ip pseudonym, device)."""
    if event.action != "login_failure":
        return []
    keys = []
    if event.ip:
        keys.append(f"ip:{event.ip}")
    if event.device:
        keys.append(f"dev:{event.device}")
    return keys


def evaluate(state: State, event: Access, key: str, env: Env) -> Finding | None:
    cfg = env.config
    window: list[list[object]] = state.setdefault("cs", [])
    prune(window, event.ts - int(cfg.stuffing_window_seconds * 1000))
    if any(entry[2] == event.event_id for entry in window):
        return None  # the same failure forwarded twice (a replay upstream)
    window.append([event.ts, event.principal, event.event_id])
    accounts = {entry[1] for entry in window}
    if len(accounts) < cfg.stuffing_accounts:
        return None
    ids = [str(entry[2]) for entry in window]
    kind = "address (pseudonym)" if key.startswith("ip:") else "device"
    minutes = (event.ts - int(str(window[0][0]))) / 60_000
    return Finding(
        rule=RULE,
        severity="high",
        explanation=(
            f"one {kind} {key.split(':', 1)[1]} failed logins on {len(accounts)} accounts "
            f"within {minutes:.1f} min (threshold {cfg.stuffing_accounts} accounts within "
            f"{cfg.stuffing_window_seconds / 60:g} min)"
        ),
        evidence=ids,
        # the ip and the device of one attack each raise their own flag: the key tells them apart
        anchor=f"{key}|{ids[0]}",
        customer_id=event.principal if event.principal_type == "customer" else None,
        figures={"accounts": float(len(accounts)), "minutes": round(minutes, 2)},
    )
