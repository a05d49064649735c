"""The simulated bank's people: customers and staff, with stable (and hidden) attributes.

Built from its own RNG stream (``"<seed>:population"``), so :func:`build_population` called with
the same config gives the very population :func:`cxstream.simulate.generate` simulates; tests use
that to look at the hidden preferences the events must never reveal.
"""

from __future__ import annotations

import math
import random
from bisect import bisect
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import accumulate

from cxstream.simulate.catalogue import CURRENT_ACCOUNT, PRODUCTS
from cxstream.simulate.config import DAY_MS, HOUR_MS, SimulationConfig
from cxstream.simulate.ids import hex_id
from cxstream.simulate.reference import (
    CITIES,
    CN_GIVEN,
    CN_MOBILE_PREFIXES,
    CN_SURNAMES,
    EMAIL_DOMAINS,
    HOME_CITIES,
    MAINLAND_CITIES,
    SPEND_CATEGORIES,
    STAFF_TEAMS,
    USER_AGENTS,
    WESTERN_FIRST,
    WESTERN_LAST,
    City,
)

SEGMENTS = ("mass", "affluent", "private", "business")
SEGMENT_WEIGHTS = (0.70, 0.20, 0.03, 0.07)
RISK_PROFILES = ("conservative", "moderate", "balanced", "growth", "aggressive")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_LANDING_MS = 20 * 60_000
_TRAVEL_INDEX = [name for name, _, _ in SPEND_CATEGORIES].index("travel")

# Hidden product needs (the recommender's ground truth; never put into events).
#
# Model: a customer has zero to three *current needs* among the products they do not hold
# (P = 0.05 / 0.45 / 0.40 / 0.10), drawn by weight from life stage (age band), segment, risk profile
# and spending habits (a high travel share of card spend means travel insurance and FX), with a
# lognormal personal factor. A need has an affinity around +1.5, every other product around
# -1.0 (log-odds scale, small personal noise). Click probability at rank 1 is
# ``sigmoid(CLICK_BASE + CLICK_SLOPE * affinity)``: ~26 % for a need, ~3.5 % otherwise, times
# a position factor; a click converts with ``sigmoid(CONVERT_BASE + CONVERT_SLOPE * affinity)``
# (~13 % for a need, ~2 % otherwise), and the product is then held (the need is met).
#
# Rationale: bank offers work when they meet a need the customer has now (a first card, a
# mortgage in the thirties, a deposit before retirement, insurance before a trip), and then
# click-through of relevant offers is several times that of irrelevant ones; the earlier
# additive model (every product about equally liked, sd ~0.9 on the log-odds of a click) made
# the best possible list only ~1.5x a random one. Needs follow observable facts (age, segment,
# risk, spending) only in probability, so a recommender must also learn each customer's own
# reactions, and a need met by a conversion is gone.
_NEED_BY_AGE = {  # weight of each product being a current need: (young < 30, mid, senior >= 50)
    "card.cashback": (4.0, 1.0, 0.4), "savings.flex": (2.0, 1.0, 1.2),
    "deposit.12m": (0.3, 0.8, 4.0), "loan.personal": (1.5, 1.2, 0.3),
    "mortgage.fixed": (0.4, 4.0, 0.1), "fund.balanced": (0.3, 1.2, 1.2),
    "insurance.travel": (0.6, 0.6, 0.6), "fx.wallet": (0.3, 0.4, 0.3),
}  # fmt: skip
_NEED_BY_SEGMENT = {  # multipliers: (mass, affluent, private, business)
    "card.cashback": (1.3, 0.8, 0.5, 0.8), "savings.flex": (1.2, 0.8, 0.5, 0.6),
    "deposit.12m": (1.0, 1.5, 1.5, 0.6), "loan.personal": (1.3, 0.5, 0.2, 2.0),
    "mortgage.fixed": (1.0, 1.3, 0.8, 0.8), "fund.balanced": (0.5, 2.5, 3.0, 1.0),
    "insurance.travel": (0.8, 1.5, 1.5, 1.5), "fx.wallet": (0.6, 2.0, 3.0, 3.0),
}  # fmt: skip
#: multiplier per risk step above "balanced" (negative steps divide)
_NEED_RISK = {"fund.balanced": 2.0, "deposit.12m": 0.6, "loan.personal": 1.2}
#: multipliers for customers who spend much on travel (top share) and for western customers
_NEED_TRAVEL = {"insurance.travel": 6.0, "fx.wallet": 5.0}
_NEED_WESTERN = {"fx.wallet": 2.0, "insurance.travel": 1.5}
_NEED_COUNT_WEIGHTS = (0.05, 0.45, 0.40, 0.10)
_NEED_AFFINITY, _OTHER_AFFINITY = 1.5, -1.0
CLICK_BASE, CLICK_SLOPE = -2.4, 0.9
CONVERT_BASE, CONVERT_SLOPE = -3.0, 0.8
#: click-through relative to rank 1 for ranks 1, 2, 3, ... (the last applies further down)
POSITION_FACTOR = (1.0, 0.75, 0.55)


def click_probability(affinity: float, position: int = 1) -> float:
    """P(click) of a product with hidden ``affinity`` shown at ``position`` (1-based)."""
    factor = POSITION_FACTOR[min(position, len(POSITION_FACTOR)) - 1]
    return factor / (1.0 + math.exp(-(CLICK_BASE + CLICK_SLOPE * affinity)))


def conversion_probability(affinity: float) -> float:
    """P(the product is opened | clicked)."""
    return 1.0 / (1.0 + math.exp(-(CONVERT_BASE + CONVERT_SLOPE * affinity)))


# favourite channel by age band: older customers lean to branch and phone, younger to app/social
_CHANNEL_AGE_TILT = {
    "web": (0.9, 1.1, 1.0), "app": (1.4, 1.1, 0.5), "social": (1.6, 1.0, 0.3),
    "chat": (1.2, 1.0, 0.7), "phone": (0.6, 0.9, 1.8), "branch": (0.4, 0.8, 2.5),
    "atm": (0.8, 1.0, 1.2),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Trip:
    """A legitimate journey: logins come from ``city`` between arrival and leaving."""

    city: City
    depart_ms: int
    arrive_ms: int
    leave_ms: int
    back_ms: int


@dataclass(slots=True, eq=False)
class Customer:
    index: int
    customer_id: str
    full_name: str
    email: str | None
    phone: str | None
    national_id: str | None
    birth_year: int
    city: City
    risk_profile: str
    segment: str
    customer_since_ms: int
    account_id: str
    western: bool
    #: (device_id, kind, user agent), kind in ios / android / desktop; the first is the phone
    devices: list[tuple[str, str, str]]
    home_ip: str
    favourite_channel: str
    #: relative visit rate (mean 1)
    activity: float
    #: cumulative weights over SPEND_CATEGORIES: the customer's spending habits
    spend_cum: list[float]
    spend_scale: float
    #: day of month salary arrives (0 = none)
    payday: int
    salary_minor: int
    holdings: set[str]
    consents: dict[str, bool]
    #: HIDDEN product affinities (log-odds scale); must never appear in any event
    preferences: dict[str, float]
    #: HIDDEN multiplier of survey dissatisfaction (mean 1)
    satisfaction: float
    trips: list[Trip] = field(default_factory=list)
    #: when the customer asks for erasure (after that they produce no events)
    erase_at_ms: int | None = None

    def reachable(self, t_ms: int) -> tuple[int, City]:
        """The earliest time >= ``t_ms`` the customer can act, and the city they are in.

        A customer in transit acts only after landing, so legitimate trips never look like
        impossible travel.
        """
        for trip in self.trips:
            if trip.depart_ms <= t_ms < trip.back_ms:
                if t_ms < trip.arrive_ms:
                    return trip.arrive_ms + _LANDING_MS, trip.city
                if t_ms >= trip.leave_ms:
                    return trip.back_ms + _LANDING_MS, self.city
                return t_ms, trip.city
        return t_ms, self.city


@dataclass(slots=True, eq=False)
class StaffMember:
    staff_id: str
    team: str
    #: local shift start hour and length; ``weekdays`` are the local weekdays worked (Mon = 0)
    shift_start_hour: int
    shift_hours: int
    weekdays: frozenset[int]
    device_id: str
    ip: str
    #: background record look-ups per hour on shift (the baseline bulk-access checks learn)
    views_per_hour: float
    service_account: bool = False

    def on_shift(self, hour_of_week: int) -> bool:
        if self.service_account:
            return True
        day, hour = divmod(hour_of_week, 24)
        since = (hour - self.shift_start_hour) % 24
        start_day = day if hour >= self.shift_start_hour else (day - 1) % 7
        return since < self.shift_hours and start_day in self.weekdays


@dataclass(eq=False)
class Population:
    customers: list[Customer]
    staff: list[StaffMember]
    service_accounts: list[StaffMember]
    #: cumulative activity of all customers, and per favourite channel (customer lists beside)
    activity_cum: list[float]
    by_channel: dict[str, tuple[list[Customer], list[float]]]
    #: team -> hour of week (local, Mon 00:00 = 0) -> staff on shift
    rota: dict[str, list[list[StaffMember]]]
    by_team: dict[str, list[StaffMember]]

    def pick_customer(self, rng: random.Random, channel: str | None, loyalty: float) -> Customer:
        """A customer weighted by activity; with ``loyalty`` odds one who favours ``channel``."""
        if channel is not None and rng.random() < loyalty:
            group = self.by_channel.get(channel)
            if group is not None:
                members, cum = group
                return members[bisect(cum, rng.random() * cum[-1])]
        cum = self.activity_cum
        return self.customers[bisect(cum, rng.random() * cum[-1])]

    def pick_staff(self, rng: random.Random, team: str, hour_of_week: int) -> StaffMember:
        """Someone of ``team`` on shift (anyone of the team if the rota is empty then)."""
        on = self.rota[team][hour_of_week] or self.by_team[team]
        return on[int(rng.random() * len(on))]


def build_population(config: SimulationConfig) -> Population:
    """The customers and staff of ``config`` (deterministic in ``config.seed``)."""
    rng = random.Random(f"{config.seed}:population")
    start_year = datetime.fromtimestamp(config.start_ms / 1000, UTC).year
    channels = list(config.channel_shares)
    shares = [config.channel_shares[c] for c in channels]
    home_cum = list(accumulate(c.residents for c in HOME_CITIES))
    spend_weights = [w for _, _, w in SPEND_CATEGORIES]
    customers = [
        _customer(rng, i, config, start_year, channels, shares, home_cum, spend_weights)
        for i in range(config.customers)
    ]
    _plan_trips(rng, customers, config)
    _plan_erasures(rng, customers, config)
    staff = [_staff(rng, i) for i in range(config.staff)]
    service = [_service_account(rng, i, config.customers) for i in range(config.service_accounts)]

    by_channel: dict[str, tuple[list[Customer], list[float]]] = {}
    for channel in channels:
        members = [c for c in customers if c.favourite_channel == channel]
        if members:
            by_channel[channel] = (members, list(accumulate(c.activity for c in members)))
    teams = sorted({t for t, _ in STAFF_TEAMS})
    by_team = {t: [s for s in staff if s.team == t] for t in teams}
    for team, team_members in by_team.items():
        if not team_members:  # small runs: borrow someone so every team can act
            by_team[team] = [staff[teams.index(team) % len(staff)]]
    rota = {t: [[s for s in by_team[t] if s.on_shift(h)] for h in range(168)] for t in teams}
    return Population(
        customers=customers,
        staff=staff,
        service_accounts=service,
        activity_cum=list(accumulate(c.activity for c in customers)),
        by_channel=by_channel,
        rota=rota,
        by_team=by_team,
    )


def _customer(
    rng: random.Random,
    index: int,
    config: SimulationConfig,
    start_year: int,
    channels: list[str],
    shares: list[float],
    home_cum: list[float],
    spend_weights: list[float],
) -> Customer:
    city = HOME_CITIES[bisect(home_cum, rng.random() * home_cum[-1])]
    western = rng.random() < (0.25 if city.country == "HK" else 0.06)
    age = int(rng.triangular(18, 86, 34))
    birth_year = start_year - age
    band = 0 if age < 30 else (1 if age < 50 else 2)
    full_name, email_local = _name(rng, western)
    serial = rng.randrange(1, 1000)
    email = (
        None
        if rng.random() < 0.08
        else f"{email_local}{serial if rng.random() < 0.6 else ''}@{rng.choice(EMAIL_DOMAINS)}"
    )
    segment = rng.choices(SEGMENTS, SEGMENT_WEIGHTS)[0]
    risk_index = min(4, max(0, round(rng.gauss(1.6 - 0.4 * (band - 1), 1.0))))
    since_year = rng.randint(max(birth_year + 18, 1998), start_year)
    since_ms = _year_start_ms(since_year) + rng.randrange(300 * DAY_MS)
    since_ms = min(since_ms, config.start_ms - 30 * DAY_MS)

    tilted = [s * _CHANNEL_AGE_TILT[c][band] for c, s in zip(channels, shares, strict=True)]
    favourite = rng.choices(channels, tilted)[0]
    phone_kind = "ios" if rng.random() < (0.6 if western else 0.35) else "android"
    devices = [(hex_id(rng, "d-"), phone_kind, rng.choice(USER_AGENTS[phone_kind]))]
    if rng.random() < 0.6:
        devices.append((hex_id(rng, "d-"), "desktop", rng.choice(USER_AGENTS["desktop"])))

    # spending habits: the population's category mix, scaled per customer and category
    habits = [w * (0.1 + rng.expovariate(1.0)) for w in spend_weights]
    scale = {"mass": 1.0, "affluent": 2.4, "private": 5.5, "business": 3.0}[segment]
    scale *= math.exp(rng.gauss(0.0, 0.35))
    payday = 0 if segment == "business" else rng.randint(1, 28)
    salary_minor = int(scale * rng.lognormvariate(math.log(9000.0), 0.4)) * 100

    weights = _need_weights(band, segment, risk_index - 2, western, habits, spend_weights)
    holdings = {CURRENT_ACCOUNT.product_id}
    for product in PRODUCTS:  # past needs, met before the run: like current ones, but rarer
        if rng.random() < min(0.6, 0.08 * weights[product.product_id]):
            holdings.add(product.product_id)
    preferences = _preferences(rng, weights, holdings)
    return Customer(
        index=index,
        customer_id=f"C{index + 1:08d}",
        full_name=full_name,
        email=email,
        phone=None if rng.random() < 0.04 else _phone(rng, western, city),
        national_id=_national_id(rng, western, city, birth_year),
        birth_year=birth_year,
        city=city,
        risk_profile=RISK_PROFILES[risk_index],
        segment=segment,
        customer_since_ms=since_ms,
        account_id=f"9000{rng.randrange(10**12):012d}",
        western=western,
        devices=devices,
        home_ip=f"10.{city.key}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        favourite_channel=favourite,
        activity=rng.gammavariate(1.5, 1.0 / 1.5),
        spend_cum=list(accumulate(habits)),
        spend_scale=scale,
        payday=payday,
        salary_minor=salary_minor,
        holdings=holdings,
        consents={"personalisation": True, "marketing": rng.random() < 0.6},
        preferences=preferences,
        satisfaction=rng.gammavariate(4.0, 0.25),
    )


def _need_weights(
    band: int, segment: str, risk: int, western: bool, habits: list[float],
    spend_weights: list[float],
) -> dict[str, float]:  # fmt: skip
    seg = SEGMENTS.index(segment)
    total = sum(habits)
    travel = _TRAVEL_INDEX
    # spends much on travel: the customer's travel share is well above the population's
    traveller = habits[travel] / total > 2.0 * spend_weights[travel] / sum(spend_weights)
    out = {}
    for pid, by_age in _NEED_BY_AGE.items():
        w = by_age[band] * _NEED_BY_SEGMENT[pid][seg] * _NEED_RISK.get(pid, 1.0) ** risk
        if traveller:
            w *= _NEED_TRAVEL.get(pid, 1.0)
        if western:
            w *= _NEED_WESTERN.get(pid, 1.0)
        out[pid] = w
    return out


def _preferences(
    rng: random.Random, weights: dict[str, float], holdings: set[str]
) -> dict[str, float]:
    open_products = [pid for pid in weights if pid not in holdings]
    count = rng.choices(range(len(_NEED_COUNT_WEIGHTS)), _NEED_COUNT_WEIGHTS)[0]
    # personal factor: two customers alike on paper still differ in what they need now
    personal = {pid: weights[pid] * rng.lognormvariate(0.0, 0.6) for pid in open_products}
    needs: set[str] = set()
    while len(needs) < min(count, len(open_products)):
        candidates = [pid for pid in open_products if pid not in needs]
        needs.add(rng.choices(candidates, [personal[pid] for pid in candidates])[0])
    return {
        pid: (_NEED_AFFINITY if pid in needs else _OTHER_AFFINITY) + rng.gauss(0.0, 0.4)
        for pid in weights
    }


def _name(rng: random.Random, western: bool) -> tuple[str, str]:
    """(full name, e-mail local part): random pairings of common name parts."""
    if western:
        first, last = rng.choice(WESTERN_FIRST), rng.choice(WESTERN_LAST)
        return f"{first} {last}", f"{first.lower()}.{last.lower()}"
    surname, surname_py = rng.choice(CN_SURNAMES)
    parts = [rng.choice(CN_GIVEN) for _ in range(1 if rng.random() < 0.35 else 2)]
    given = "".join(p[0] for p in parts)
    given_py = "".join(p[1] for p in parts)
    return surname + given, f"{given_py}.{surname_py}"


def _phone(rng: random.Random, western: bool, city: City) -> str:
    if western:
        if rng.random() < 0.5:
            return f"+447700900{rng.randrange(1000):03d}"  # Ofcom range reserved for drama
        return f"+1202555{rng.randrange(100, 200):04d}"  # NANP 555-0100..0199, fictional
    if city.country == "HK":
        return f"+852{rng.choice('569')}{rng.randrange(10**7):07d}"
    return f"+86{rng.choice(CN_MOBILE_PREFIXES)}{rng.randrange(10**8):08d}"


def _national_id(rng: random.Random, western: bool, city: City, birth_year: int) -> str | None:
    if western:
        return f"P{rng.randrange(10**8):08d}"  # passport-style, issuer unknown
    if not city.region_code:
        return None
    region = city.region_code if rng.random() < 0.7 else rng.choice(MAINLAND_CITIES).region_code
    body = (
        f"{region}{birth_year:04d}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        f"{rng.randrange(1000):03d}"
    )
    valid = sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True)) % 11
    # a wrong check character: the id looks real to a human but no real person can have it
    return body + _ID_CHECK[(valid + 1 + rng.randrange(10)) % 11]


def _year_start_ms(year: int) -> int:
    return int(datetime(year, 1, 1, tzinfo=UTC).timestamp() * 1000)


def _plan_trips(rng: random.Random, customers: list[Customer], config: SimulationConfig) -> None:
    span = config.span_ms()
    rate = config.trips_per_customer_per_day * span / DAY_MS
    if rate <= 0:
        return
    for customer in customers:
        if rng.random() >= rate:  # rate << 1: at most one trip per run is plenty
            continue
        dest = rng.choice([c for c in CITIES if c.key != customer.city.key])
        km = distance_km(customer.city, dest)
        travel = int((km / 800.0 + 1.5) * HOUR_MS)  # flight at 800 km/h plus airports
        depart = config.start_ms + rng.randrange(span)
        arrive = depart + travel
        leave = arrive + rng.randint(1, 5) * DAY_MS
        customer.trips.append(Trip(dest, depart, arrive, leave, leave + travel))


def _plan_erasures(rng: random.Random, customers: list[Customer], config: SimulationConfig) -> None:
    rate = config.erasure_per_customer_per_day * config.span_ms() / DAY_MS
    if rate <= 0:
        return
    for customer in customers:
        if rng.random() < rate:
            customer.erase_at_ms = config.start_ms + HOUR_MS + rng.randrange(config.span_ms())


def distance_km(a: City, b: City) -> float:
    """Great-circle distance (haversine)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def _staff(rng: random.Random, index: int) -> StaffMember:
    team = rng.choices([t for t, _ in STAFF_TEAMS], [w for _, w in STAFF_TEAMS])[0]
    if team == "customer_service":  # the hotline and chat desk run around the clock in shifts
        start = rng.choices((0, 8, 16), (0.15, 0.5, 0.35))[0]
        hours, days, rate = 8, frozenset(range(7)), rng.uniform(6, 15)
    elif team == "branch":  # doors close at 17:00, the last customers are served until 18:00
        start, hours, days, rate = 9, 9, frozenset(range(6)), rng.uniform(4, 10)
    else:
        start, hours, days = 9, 9, frozenset(range(5))
        rate = {"risk_control": rng.uniform(3, 8), "it": rng.uniform(0.5, 2)}.get(
            team, rng.uniform(0.2, 1)
        )
    return StaffMember(
        staff_id=f"S{index + 1:05d}",
        team=team,
        shift_start_hour=start,
        shift_hours=hours,
        weekdays=days,
        device_id=hex_id(rng, "ws-"),
        ip=f"10.200.{index // 250}.{index % 250 + 1}",
        views_per_hour=rate,
    )


def _service_account(rng: random.Random, index: int, customers: int) -> StaffMember:
    names = ("svc-crm-sync", "svc-statements", "svc-fraud-scoring", "svc-notifications")
    name = names[index] if index < len(names) else f"svc-batch-{index}"
    return StaffMember(
        staff_id=name,
        team="it",
        shift_start_hour=0,
        shift_hours=24,
        weekdays=frozenset(range(7)),
        device_id=hex_id(rng, "host-"),
        ip=f"10.201.0.{index + 1}",
        # sync jobs touch a share of the customer base every hour
        views_per_hour=max(20.0, customers * rng.uniform(0.03, 0.06)),
        service_account=True,
    )
