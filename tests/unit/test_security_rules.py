"""Each detection rule through the real engine (no broker): fires, stays quiet, window edges,
suppression, and replays that raise nothing new."""

from __future__ import annotations

import itertools
from typing import Any

from cxstream.settings import SecuritySettings, Settings
from processors.security.flags import flag_id
from processors.security.testing import MemoryPipeline

T0 = 1_796_000_000_000  # Monday 2026-11-30 08:53 Asia/Shanghai
MIN = 60_000
_ids = itertools.count()

SHANGHAI = {"geo_city": "Shanghai", "geo_country": "CN", "geo_lat": 31.2304, "geo_lon": 121.4737}
LAGOS = {"geo_city": "Lagos", "geo_country": "NG", "geo_lat": 6.5244, "geo_lon": 3.3792}
BEIJING = {"geo_city": "Beijing", "geo_country": "CN", "geo_lat": 39.9042, "geo_lon": 116.4074}


def access(principal: str, action: str, at: int, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": f"e-{next(_ids)}",
        "occurred_at": at,
        "principal_id": principal,
        "principal_type": "staff" if principal.startswith("S") else "customer",
        "action": action,
        "target_customer_id": None,
        "record_count": 1,
        "staff_team": None,
        "ip": "10.1.2.3",
        "device_id": "d-home",
        "user_agent": "ua",
        "auth_method": "password",
        "amount_minor": None,
        "source": "web-banking",
        **SHANGHAI,
    }
    record.update(fields)
    return record


def pipeline(**security: Any) -> MemoryPipeline:
    # no model: rule tests must not depend on anomaly scores (tested in test_security_model)
    config = SecuritySettings(anomaly_enabled=False, **security)
    return MemoryPipeline(Settings(security=config), partitions=2)


def run(pipe: MemoryPipeline, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return pipe.run(pipe.events(records))


def rules(flags: list[dict[str, Any]]) -> list[str]:
    return [flag["rule"] for flag in flags]


# -- brute force ---------------------------------------------------------------------------------


def test_brute_force_fires_at_the_nth_failure_with_its_evidence() -> None:
    pipe = pipeline(brute_force_failures=5, brute_force_window_seconds=600)
    failures = [access("C1", "login_failure", T0 + i * 10_000) for i in range(5)]
    assert run(pipe, failures[:4]) == []
    flags = run(pipe, failures[4:])
    assert rules(flags) == ["brute_force"]
    flag = flags[0]
    assert flag["evidence_event_ids"] == [r["event_id"] for r in failures]
    assert flag["principal_id"] == flag["customer_id"] == "C1"
    assert flag["flag_id"] == flag_id("C1", "brute_force", failures[0]["event_id"])
    assert flag["occurred_at"] == failures[-1]["occurred_at"]


def test_brute_force_window_edge() -> None:
    pipe = pipeline(brute_force_failures=3, brute_force_window_seconds=600)
    # the first failure falls out of the window exactly when the third arrives 600 s + 1 ms later
    spread = [T0, T0 + 300_000, T0 + 600_001]
    assert run(pipe, [access("C1", "login_failure", t) for t in spread]) == []
    inside = [T0, T0 + 300_000, T0 + 600_000]
    assert rules(run(pipe, [access("C2", "login_failure", t) for t in inside])) == ["brute_force"]


def test_brute_force_ignores_successes_and_other_principals() -> None:
    pipe = pipeline(brute_force_failures=3)
    records = [
        access("C1", "login_failure", T0),
        access("C2", "login_failure", T0 + 1),
        access("C1", "login_success", T0 + 2),
        access("C3", "login_failure", T0 + 3),
        access("C1", "login_failure", T0 + 4),
    ]
    assert run(pipe, records) == []


def test_suppression_one_flag_per_principal_and_rule_within_the_window() -> None:
    pipe = pipeline(brute_force_failures=3, suppression_seconds=3600)
    first = [access("C1", "login_failure", T0 + i * 1000) for i in range(10)]
    assert rules(run(pipe, first)) == ["brute_force"]
    # still failing 30 min later: suppressed; after the suppression window: a new flag
    again = [access("C1", "login_failure", T0 + 30 * MIN + i * 1000) for i in range(5)]
    assert run(pipe, again) == []
    later = [access("C1", "login_failure", T0 + 61 * MIN + i * 1000) for i in range(3)]
    flags = run(pipe, later)
    assert rules(flags) == ["brute_force"]
    assert flags[0]["flag_id"] == flag_id("C1", "brute_force", later[0]["event_id"])


def test_replay_of_applied_offsets_and_retried_event_ids_raise_nothing_new() -> None:
    pipe = pipeline(brute_force_failures=3)
    events = pipe.events([access("C1", "login_failure", T0 + i * 1000) for i in range(3)])
    assert rules(pipe.run(events)) == ["brute_force"]
    # crash before the offsets were committed: the same messages come again, to a new engine
    pipe.engine = pipe.new_engine(pipe.settings)
    assert pipe.run(events) == []
    assert pipe.engine.stats.replays_skipped == 3
    # a client retry: same event ids under new offsets
    retried = pipe.events([item.record for item in events])
    assert pipe.run(retried) == []
    assert pipe.engine.stats.duplicates_skipped == 3


# -- credential stuffing ------------------------------------------------------------------------


def test_credential_stuffing_one_ip_many_accounts_across_partitions() -> None:
    pipe = pipeline(stuffing_accounts=6, stuffing_window_seconds=1800)
    records = [
        access(f"C{i}", "login_failure", T0 + i * 20_000, ip="203.0.113.9", device_id=f"d-{i}")
        for i in range(6)
    ]
    assert {pipe.partition(r["principal_id"]) for r in records} == {0, 1}
    flags = run(pipe, records)
    assert rules(flags) == ["credential_stuffing"]
    flag = flags[0]
    assert set(flag["evidence_event_ids"]) == {r["event_id"] for r in records}
    # the ip is PII: only its pseudonym may appear
    assert "203.0.113.9" not in str(flag)


def test_credential_stuffing_one_device_rotating_ips() -> None:
    pipe = pipeline(stuffing_accounts=4)
    records = [
        access(f"C{i}", "login_failure", T0 + i * 1000, ip=f"198.51.100.{i}", device_id="d-bot")
        for i in range(4)
    ]
    flags = run(pipe, records)
    assert rules(flags) == ["credential_stuffing"]
    assert "device d-bot" in flags[0]["explanation"]


def test_credential_stuffing_quiet_below_threshold_and_outside_window() -> None:
    pipe = pipeline(stuffing_accounts=4, stuffing_window_seconds=600)
    # four accounts but spread over more than the window; and one account failing many times
    spread = [
        access(f"C{i}", "login_failure", T0 + i * 301_000, ip="203.0.113.7", device_id=f"x{i}")
        for i in range(4)
    ]
    one = [access("C9", "login_failure", T0 + i, ip="203.0.113.8") for i in range(3)]
    assert "credential_stuffing" not in rules(run(pipe, spread + one))


# -- impossible travel --------------------------------------------------------------------------


def test_impossible_travel_fires_on_speed_and_not_on_a_plausible_trip() -> None:
    pipe = pipeline(travel_max_kmh=1000, travel_min_km=500)
    home = access("C1", "login_success", T0)
    far = access("C1", "login_success", T0 + 30 * MIN, **LAGOS)
    flags = run(pipe, [home, far])
    assert rules(flags) == ["impossible_travel"]
    assert flags[0]["evidence_event_ids"] == [home["event_id"], far["event_id"]]
    # Shanghai -> Beijing (1,067 km) in 3 h is a flight (~356 km/h)
    trip = [access("C2", "login_success", T0), access("C2", "login_success", T0 + 180 * MIN)]
    trip[1].update(BEIJING)
    assert run(pipe, trip) == []


def test_impossible_travel_threshold_edge_and_min_distance() -> None:
    # 1,067 km in 64 min is 1,000.3 km/h: just above 1000; in 65 min, 985 km/h: below
    pipe = pipeline(travel_max_kmh=1000, travel_min_km=500)
    above = [access("C1", "login_success", T0), access("C1", "login_success", T0 + 64 * MIN)]
    below = [access("C2", "login_success", T0), access("C2", "login_success", T0 + 65 * MIN)]
    for record in (above[1], below[1]):
        record.update(BEIJING)
    assert rules(run(pipe, above)) == ["impossible_travel"]
    assert run(pipe, below) == []
    # far above the speed but closer than the minimum distance (geo-IP noise)
    near = pipeline(travel_min_km=2000)
    fast = [access("C3", "login_success", T0), access("C3", "login_success", T0 + MIN)]
    fast[1].update(BEIJING)
    assert run(near, fast) == []


# -- new device + sensitive action ------------------------------------------------------------


def _history(principal: str, n: int = 3) -> list[dict[str, Any]]:
    return [access(principal, "login_success", T0 - (10 - i) * 3_600_000) for i in range(n)]


def test_new_device_from_new_city_then_transfer_fires() -> None:
    pipe = pipeline(new_device_window_seconds=1800, new_device_min_history=3)
    login = access("C1", "login_success", T0, device_id="d-new", **BEIJING)
    transfer = access("C1", "transfer", T0 + 5 * MIN, device_id="d-new", amount_minor=10**6)
    transfer.update(BEIJING)
    flags = run(pipe, [*_history("C1"), login, transfer])
    assert rules(flags) == ["new_device_sensitive_action"]
    assert flags[0]["evidence_event_ids"] == [login["event_id"], transfer["event_id"]]


def test_new_device_quiet_when_enrolled_known_city_late_or_cold() -> None:
    pipe = pipeline(new_device_window_seconds=1800, new_device_min_history=3)
    # enrolled with a device_change (verified), then a transfer
    enrolled = [
        access("C1", "device_change", T0, device_id="d-phone", auth_method="otp"),
        access("C1", "transfer", T0 + MIN, device_id="d-phone"),
    ]
    # a second device in the customer's own city
    own_city = [access("C2", "transfer", T0, device_id="d-laptop")]
    # new device from a new city, but the transfer comes after the window
    late = [
        access("C3", "login_success", T0, device_id="d-new", **BEIJING),
        access("C3", "transfer", T0 + 31 * MIN, device_id="d-new", **BEIJING),
    ]
    # too little history: the devices and cities seen are the baseline
    cold = [
        access("C4", "login_success", T0 - MIN),
        access("C4", "transfer", T0, device_id="d-new", **BEIJING),
    ]
    records = [*_history("C1"), *_history("C2"), *_history("C3"), *enrolled, *own_city]
    assert run(pipe, [*records, *late, *cold]) == []


# -- staff rules -------------------------------------------------------------------------------


def _staff(action: str, at: int, target: str, team: str = "marketing", **kw: Any) -> dict:
    return access("S1", action, at, target_customer_id=target, staff_team=team, **kw)


def test_off_hours_staff_needs_a_pattern_and_spares_round_the_clock_teams() -> None:
    pipe = pipeline(off_hours_min_events=3, office_start_hour=7, office_end_hour=21)
    night = T0 - 6 * 3_600_000  # 02:53 Monday, Shanghai
    one = [_staff("record_view", night, "C1")]
    assert run(pipe, one) == []
    more = [_staff("record_view", night + i * MIN, f"C{i}") for i in range(2, 4)]
    flags = run(pipe, more)
    assert rules(flags) == ["off_hours_staff"]
    assert len(flags[0]["evidence_event_ids"]) == 3
    desk = pipeline(off_hours_min_events=1)
    hotline = [
        access("S2", "record_view", night, target_customer_id="C1", staff_team="customer_service")
    ]
    day = [_staff("record_view", T0 + 4 * 3_600_000, "C1")]  # 12:53 Monday
    assert run(desk, hotline + day) == []


def test_staff_bulk_access_against_own_baseline() -> None:
    pipe = pipeline(
        bulk_min_distinct=20,
        bulk_baseline_ratio=5,
        bulk_baseline_min_hours=3,
        off_hours_min_events=99,
    )
    hour = 3_600_000
    start = (T0 // hour - 20) * hour
    # four normal hours: 8 distinct customers each -> own baseline 8, threshold 40
    normal = [
        _staff("record_view", start + h * hour + i * MIN, f"C{h}-{i}")
        for h in range(4)
        for i in range(8)
    ]
    assert run(pipe, normal) == []
    burst_at = start + 5 * hour
    burst = [_staff("record_export", burst_at + i * 1000, f"X{i}") for i in range(40)]
    flags = run(pipe, burst)
    assert rules(flags) == ["staff_bulk_access"]
    assert flags[0]["occurred_at"] == burst[39]["occurred_at"]  # the 40th distinct customer
    assert "baseline (own) 8.0" in flags[0]["explanation"]
    # the same customer viewed again and again is not bulk access
    again = pipeline(bulk_min_distinct=5, off_hours_min_events=99)
    repeat = [
        access("S3", "record_view", T0 - 6 * hour + i, target_customer_id="C1", staff_team="it")
        for i in range(50)
    ]
    assert run(again, repeat) == []


def test_staff_bulk_access_uses_the_team_baseline_for_a_newcomer() -> None:
    config = SecuritySettings(
        anomaly_enabled=False,
        bulk_min_distinct=10,
        bulk_baseline_ratio=4,
        bulk_baseline_min_hours=2,
        off_hours_min_events=99,
    )
    # one partition: the team baseline is kept per partition (the colleagues sharing it)
    pipe = MemoryPipeline(Settings(security=config), partitions=1)
    hour = 3_600_000
    start = (T0 // hour - 20) * hour
    records = []
    for member in range(3):  # colleagues: 5 distinct customers per hour
        for h in range(3):
            for i in range(5):
                records.append(
                    access(f"S0{member}", "record_view", start + h * hour + i * MIN,
                           target_customer_id=f"C{member}{h}{i}", staff_team="branch")
                )  # fmt: skip
    newcomer = [
        access("S99", "record_view", start + 4 * hour + i * 1000, target_customer_id=f"N{i}",
               staff_team="branch")
        for i in range(20)
    ]  # fmt: skip
    flags = run(pipe, records + newcomer)
    assert rules(flags) == ["staff_bulk_access"]
    assert "baseline (team) 5.0" in flags[0]["explanation"]
    assert flags[0]["occurred_at"] == newcomer[19]["occurred_at"]  # 4 x 5 = 20 distinct
