"""Injected security scenarios, with their ground truth written to the label sink.

Scenario events look like ordinary traffic (same sources, user agents, id formats): only their
pattern over time gives them away, which is what the access-anomaly detection has to find.
Scenarios draw from their own RNG stream, so adding or removing them leaves the ordinary traffic
of a seed unchanged.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from cxstream.simulate import records
from cxstream.simulate.config import HOUR_MS, MINUTE_MS, SCENARIO_TYPES
from cxstream.simulate.engine import Engine, ScenarioTracker
from cxstream.simulate.ids import hex_id, uuid4_from
from cxstream.simulate.labels import LabelSink, ScenarioLabel
from cxstream.simulate.population import Customer, distance_km
from cxstream.simulate.reference import FAR_CITIES, SCRIPT_AGENTS, USER_AGENTS, City

Injector = Callable[["_Injector", int], None]


class _Injector:
    def __init__(self, eng: Engine, rng: random.Random, sink: LabelSink | None) -> None:
        self.eng = eng
        self.rng = rng
        self.sink = sink
        self.customers = [c for c in eng.pop.customers if c.erase_at_ms is None]

    def tracker(self, scenario: str, principal_type: str, principal_id: str) -> ScenarioTracker:
        label = ScenarioLabel(
            scenario=scenario,
            label_id=hex_id(self.rng, "lbl-"),
            principal_type=principal_type,
            principal_id=principal_id,
            start_ms=0,
            end_ms=0,
            event_ids=[],
            principal_ids=[principal_id],
        )
        tracker = ScenarioTracker(label, self.sink)
        self.eng.trackers.append(tracker)
        return tracker

    def attacker(self) -> tuple[City, str, str, str]:
        """(city, ip, device id, user agent) of an attacker far from every home city."""
        rng = self.rng
        city = rng.choice(FAR_CITIES)
        ip = f"10.{city.key}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        agent = (
            rng.choice(SCRIPT_AGENTS) if rng.random() < 0.5 else rng.choice(USER_AGENTS["desktop"])
        )
        return city, ip, hex_id(rng, "d-"), agent

    def login(
        self,
        tracker: ScenarioTracker,
        t: int,
        c: Customer,
        action: str,
        city: City,
        ip: str,
        device: str,
        agent: str,
        amount: int | None = None,
    ) -> str:
        event_id = uuid4_from(self.rng)
        auth = "otp" if action in ("password_reset", "transfer") else "password"
        self.eng.push(
            t,
            "access_event",
            records.access(
                event_id, t, c.customer_id, "customer", action, "web-banking", ip=ip,
                device_id=device, user_agent=agent, city=city, auth_method=auth,
                amount_minor=amount,
            ),
            tracker,
        )  # fmt: skip
        return event_id

    # -- the scenarios ------------------------------------------------------------------------

    def brute_force(self, t: int) -> None:
        """Dozens of failed logins on one account from one address in minutes, maybe a break-in."""
        rng = self.rng
        victim = rng.choice(self.customers)
        city, ip, device, agent = self.attacker()
        tracker = self.tracker("brute_force", "customer", victim.customer_id)
        attempts = rng.randint(20, 60)
        window = rng.randint(2, 10) * MINUTE_MS
        times = sorted(t + rng.randrange(window) for _ in range(attempts))
        for at in times:
            self.login(tracker, at, victim, "login_failure", city, ip, device, agent)
        succeeded = rng.random() < 0.35
        if succeeded:
            at = times[-1] + rng.randint(10_000, 60_000)
            self.login(tracker, at, victim, "login_success", city, ip, device, agent)
            self.login(tracker, at + 60_000, victim, "password_reset", city, ip, device, agent)
            amount = rng.randint(20_000, 80_000) * 100
            self.login(tracker, at + 180_000, victim, "transfer", city, ip, device, agent, amount)
        tracker.label.ip, tracker.label.device_id = ip, device
        tracker.label.details = {"attempts": attempts, "succeeded": succeeded, "city": city.name}

    def credential_stuffing(self, t: int) -> None:
        """One address and device trying leaked passwords on many accounts; a few work."""
        rng = self.rng
        city, ip, device, agent = self.attacker()
        accounts = rng.sample(self.customers, min(len(self.customers), rng.randint(40, 200)))
        tracker = self.tracker("credential_stuffing", "customer", accounts[0].customer_id)
        window = rng.randint(10, 30) * MINUTE_MS
        successes = 0
        for victim in accounts:
            at = t + rng.randrange(window)
            for _ in range(1 if rng.random() < 0.7 else 2):
                self.login(tracker, at, victim, "login_failure", city, ip, device, agent)
                at += rng.randint(1_000, 5_000)
            if rng.random() < 0.03:
                self.login(tracker, at, victim, "login_success", city, ip, device, agent)
                successes += 1
        label = tracker.label
        label.principal_ids = [c.customer_id for c in accounts]
        label.ip, label.device_id = ip, device
        label.details = {"accounts": len(accounts), "successes": successes, "city": city.name}

    def impossible_travel(self, t: int) -> None:
        """A genuine login at home, then one from another continent minutes later."""
        rng = self.rng
        candidates = [c for c in self.customers if not c.trips]
        victim = rng.choice(candidates or self.customers)
        device, _, agent = victim.devices[0]
        tracker = self.tracker("impossible_travel", "customer", victim.customer_id)
        home = victim.city
        self.login(tracker, t, victim, "login_success", home, victim.home_ip, device, agent)
        far, ip, new_device, new_agent = self.attacker()
        gap = rng.randint(5, 90) * MINUTE_MS
        at = t + gap
        self.login(tracker, at, victim, "login_success", far, ip, new_device, new_agent)
        if rng.random() < 0.4:
            amount = rng.randint(5_000, 50_000) * 100
            self.login(
                tracker, at + 120_000, victim, "transfer", far, ip, new_device, new_agent, amount
            )
        km = distance_km(home, far)
        tracker.label.ip, tracker.label.device_id = ip, new_device
        tracker.label.details = {
            "from_city": home.name,
            "to_city": far.name,
            "distance_km": round(km),
            "minutes": gap // MINUTE_MS,
            "implied_kmh": round(km / (gap / HOUR_MS)),
        }

    def staff_bulk_access(self, t: int) -> None:
        """One staff member viewing and exporting far more distinct customers than usual."""
        rng = self.rng
        pop = self.eng.pop
        insiders = [s for s in pop.staff if s.team in ("customer_service", "branch", "marketing")]
        staff = rng.choice(insiders or pop.staff)
        tracker = self.tracker("staff_bulk_access", "staff", staff.staff_id)
        n = min(self.eng.config.staff_bulk_records, len(pop.customers))
        targets = rng.sample(pop.customers, n)
        for target in targets:
            at = t + rng.randrange(HOUR_MS)
            action = "record_export" if rng.random() < 0.15 else "record_view"
            self.eng.push(
                at,
                "access_event",
                records.access(
                    uuid4_from(rng), at, staff.staff_id, "staff", action, "crm-audit",
                    target_customer_id=target.customer_id, staff_team=staff.team, ip=staff.ip,
                    device_id=staff.device_id, user_agent="CXBank-Desk/5.2",
                ),
                tracker,
            )  # fmt: skip
        tracker.label.ip, tracker.label.device_id = staff.ip, staff.device_id
        tracker.label.details = {
            "records": n,
            "team": staff.team,
            "baseline_views_per_hour": round(staff.views_per_hour, 1),
        }


_INJECTORS: dict[str, Injector] = {
    "brute_force": _Injector.brute_force,
    "credential_stuffing": _Injector.credential_stuffing,
    "impossible_travel": _Injector.impossible_travel,
    "staff_bulk_access": _Injector.staff_bulk_access,
}


def inject_scenarios(eng: Engine, sink: LabelSink | None) -> int:
    """Schedule the run's scenarios into ``eng``; returns how many were injected."""
    cfg = eng.config
    rng = random.Random(f"{cfg.seed}:scenarios")
    injector = _Injector(eng, rng, sink)
    span = cfg.span_ms()
    # keep clear of the registration burst at the start and of the cut-off at the end
    first = cfg.start_ms + max(span // 20, MINUTE_MS)
    last = cfg.start_ms + max(span - span // 10 - HOUR_MS, span // 2)
    counts = cfg.scenario_counts()
    injected = 0
    for name in SCENARIO_TYPES:
        for _ in range(counts[name]):
            _INJECTORS[name](injector, first + rng.randrange(max(last - first, 1)))
            injected += 1
    return injected
