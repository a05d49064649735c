"""Model features of an access event, scaled to [0, 1], read from the principal's state.

Computed *before* the rules update the state, so "new device" means new before this event.
Customers and staff get different features (and different models). Continuous features are
rounded to 0.01: far finer than the trees' splits matter for, and it lets repeated vectors share
a cached score (:mod:`online_models.anomaly`).
"""

from __future__ import annotations

import math

from processors.security.access import Access
from processors.security.rules.base import Env, State
from processors.security.rules.impossible_travel import MIN_GAP_MS, haversine_km


def _log_scaled(value: float, decades: float) -> float:
    if value <= 0.0:
        return 0.0
    return round(min(1.0, math.log10(1.0 + value) / decades), 2)


def customer_features(state: State, event: Access, env: Env) -> dict[str, float]:
    cfg = env.config
    _, hour = env.local_time(event.ts)
    kmh = 0.0
    last = state.get("it")
    if last is not None and event.lat is not None and event.lon is not None:
        km = haversine_km(last[1], last[2], event.lat, event.lon)
        kmh = km / (max(event.ts - last[0], MIN_GAP_MS) / 3_600_000)
    known = state.get("nd_dev") or []
    cities = state.get("nd_city") or []
    failures = len(state.get("bf") or ())
    return {
        "hour": hour / 24.0,
        "recent_failures": min(1.0, failures / cfg.brute_force_failures),
        "speed_kmh": _log_scaled(kmh, 5.0),
        "new_device": 1.0 if known and event.device not in known else 0.0,
        "new_city": 1.0 if cities and event.city not in cities else 0.0,
        "amount": _log_scaled((event.amount_minor or 0) / 100.0, 7.0),
        "sensitive": 1.0 if event.action in cfg.sensitive_actions else 0.0,
        "failure": 1.0 if event.action == "login_failure" else 0.0,
    }


def staff_features(state: State, event: Access, env: Env) -> dict[str, float]:
    cfg = env.config
    weekday, hour = env.local_time(event.ts)
    window = state.get("bk_w") or ()
    since = event.ts - int(cfg.bulk_window_seconds * 1000)
    distinct = len({entry[1] for entry in window if entry[0] >= since})
    base = state.get("bk_base", 0.0)
    office = weekday in cfg.office_weekdays and cfg.office_start_hour <= hour < cfg.office_end_hour
    return {
        "hour": hour / 24.0,
        "off_hours": 0.0 if office else 1.0,
        "distinct_customers": _log_scaled(distinct, 3.0),
        "above_baseline": round(
            distinct / (distinct + max(base, 1.0) * cfg.bulk_baseline_ratio), 2
        ),
        "export": 1.0 if event.action == "record_export" else 0.0,
        "api": 1.0 if event.action == "api_call" else 0.0,
        "records": _log_scaled(event.record_count - 1, 4.0),
    }


def features(state: State, event: Access, env: Env) -> dict[str, float]:
    if event.principal_type == "staff":
        return staff_features(state, event, env)
    return customer_features(state, event, env)
