"""Impossible travel: implied speed between consecutive logins above ``travel_max_kmh``.

Great-circle (haversine) distance of the geo-IP positions over the time between the logins;
distances under ``travel_min_km`` never count (city-level geo-IP of neighbours is noisy).
State ``it``: ``[ts, lat, lon, event_id, city]`` of the principal's last located login.
"""

from __future__ import annotations

import math

from processors.security.access import Access
from processors.security.rules.base import Env, Finding, State

RULE = "impossible_travel"
EARTH_RADIUS_KM = 6371.0
#: time between logins never counts as less than this (clock skew between frontends)
MIN_GAP_MS = 60_000


def applies(principal_type: str, action: str) -> bool:
    return action == "login_success"


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km.

    >>> round(haversine_km(31.2304, 121.4737, 39.9042, 116.4074))
    1067
    """
    p1, l1, p2, l2 = map(math.radians, (lat1, lon1, lat2, lon2))
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin((l2 - l1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))


def evaluate(state: State, event: Access, env: Env) -> Finding | None:
    if event.action != "login_success" or event.lat is None or event.lon is None:
        return None
    last = state.get("it")
    state["it"] = [event.ts, event.lat, event.lon, event.event_id, event.city]
    if last is None:
        return None
    cfg = env.config
    last_ts, last_lat, last_lon, last_id, last_city = last
    km = haversine_km(last_lat, last_lon, event.lat, event.lon)
    if km < cfg.travel_min_km:
        return None
    gap_ms = max(event.ts - last_ts, MIN_GAP_MS)
    kmh = km / (gap_ms / 3_600_000)
    if kmh <= cfg.travel_max_kmh:
        return None
    return Finding(
        rule=RULE,
        severity="high",
        explanation=(
            f"logins {km:,.0f} km apart ({last_city or '?'} -> {event.city or '?'}) within "
            f"{gap_ms / 60_000:.0f} min: {kmh:,.0f} km/h (threshold {cfg.travel_max_kmh:,.0f})"
        ),
        evidence=[str(last_id), event.event_id],
        anchor=str(last_id),
        customer_id=event.principal if event.principal_type == "customer" else None,
        figures={"km": round(km, 1), "kmh": round(kmh, 1), "minutes": gap_ms / 60_000},
    )
