"""The closed loop: simulated customers react to the recommendations cxstream actually served.

The offline generator (:func:`cxstream.simulate.generate`) invents its own recommendations and is
left untouched (deterministic by seed). Here customers of the same population
(:func:`cxstream.simulate.build_population`, hidden preferences included) visit, look up the
list served to them (from Redis, :func:`run_against_redis`, or from any ``lookup`` callable) and
react with the generator's response model: impressions for the first ``shown`` items, clicks by
hidden affinity and position, conversions (``convert`` feedback plus the ``product_holding_changed``
naming the list) and dismissals. Visits and reactions draw from their own seeded RNG streams, so
two runs with the same seed see the same visits whatever the policy served.
"""

from __future__ import annotations

import json
import random
from bisect import bisect
from collections.abc import Callable, Iterator, Mapping
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from cxstream.simulate import records
from cxstream.simulate.catalogue import PRODUCT_TYPES
from cxstream.simulate.config import SimulationConfig
from cxstream.simulate.ids import uuid4_from
from cxstream.simulate.population import (
    Customer,
    build_population,
    click_probability,
    conversion_probability,
)
from cxstream.simulate.traffic import SimEvent

if TYPE_CHECKING:
    from cxstream.settings import Settings
    from streams.producer import EventProducer

#: a served list as the recommender writes it (JSON object), or None when nothing is served
Served = Mapping[str, Any] | None
Lookup = Callable[[str], Served]


class ClosedLoop:
    def __init__(self, config: SimulationConfig, *, shown: int = 3, gap_ms: int = 2_000) -> None:
        self.config = config
        self.population = build_population(config)
        self.customers = self.population.customers
        self.shown = shown
        self.gap_ms = gap_ms
        self._visit_rng = random.Random(f"{config.seed}:loop-visits")
        self._react_rng = random.Random(f"{config.seed}:loop-reactions")
        self._cum = list(accumulate(c.activity for c in self.customers))
        self.now_ms = config.start_ms

    def registrations(self) -> list[SimEvent]:
        """customer_registered and the initial holdings of every customer (at the start)."""
        rng = random.Random(f"{self.config.seed}:loop-registrations")
        t = self.config.start_ms
        out: list[SimEvent] = []
        for c in self.customers:
            out.append(SimEvent("customer_registered", records.customer_registered(
                uuid4_from(rng), t, c.customer_id, c.full_name, c.email, c.phone,
                c.national_id, c.birth_year, c.city.name, c.risk_profile, c.segment,
                c.customer_since_ms,
            )))  # fmt: skip
            for product in sorted(c.holdings):
                if product == "account.current":
                    continue
                out.append(SimEvent("product_holding_changed", records.product_holding(
                    uuid4_from(rng), t, c.customer_id, product, PRODUCT_TYPES[product],
                    "opened", None, "branch", "core-banking",
                )))  # fmt: skip
        return out

    def visits(self, n: int) -> Iterator[Customer]:
        """``n`` visits, customers weighted by activity; advances :attr:`now_ms`."""
        rng, cum, customers = self._visit_rng, self._cum, self.customers
        for _ in range(n):
            self.now_ms += 1 + int(rng.expovariate(1.0 / self.gap_ms))
            yield customers[bisect(cum, rng.random() * cum[-1])]

    def react(self, c: Customer, served: Served, channel: str = "app") -> list[SimEvent]:
        """What ``c`` does with the list ``served`` to them during a visit at :attr:`now_ms`."""
        if not served or not served.get("items"):
            return []
        rng = self._react_rng
        t = self.now_ms
        rec_id = served["recommendation_id"]
        cid = c.customer_id
        shown = [item["product_id"] for item in served["items"][: self.shown]]
        out = [
            SimEvent("recommendation_feedback", records.recommendation_feedback(
                uuid4_from(rng), t, cid, rec_id, product, "impression", pos, channel, "mobile-app",
            ))
            for pos, product in enumerate(shown, 1)
        ]  # fmt: skip
        for pos, product in enumerate(shown, 1):
            affinity = c.preferences.get(product, -3.0)
            if rng.random() < click_probability(affinity, pos):
                t += 2_000 + int(rng.random() * 18_000)
                out.append(self._feedback(rng, t, cid, rec_id, product, "click", pos, channel))
                if product not in c.holdings and rng.random() < conversion_probability(affinity):
                    t += 30_000 + int(rng.random() * 150_000)
                    out.append(
                        self._feedback(rng, t, cid, rec_id, product, "convert", pos, channel)
                    )
                    c.holdings.add(product)
                    out.append(SimEvent("product_holding_changed", records.product_holding(
                        uuid4_from(rng), t + 1_000, cid, product, PRODUCT_TYPES[product],
                        "opened", rec_id, channel, "mobile-app",
                    )))  # fmt: skip
            elif rng.random() < 0.08:
                out.append(self._feedback(rng, t, cid, rec_id, product, "dismiss", pos, channel))
        return out

    @staticmethod
    def _feedback(
        rng: random.Random, t: int, cid: str, rec_id: str, product: str, action: str, pos: int,
        channel: str,
    ) -> SimEvent:  # fmt: skip
        return SimEvent("recommendation_feedback", records.recommendation_feedback(
            uuid4_from(rng), t, cid, rec_id, product, action, pos, channel, "mobile-app",
        ))  # fmt: skip


def redis_lookup(settings: Settings) -> Lookup:
    """Reads the list served to a customer from Redis (key ``<prefix>:reco:<customer id>``)."""
    from cxstream.redis_connection import sync_redis

    client = sync_redis(settings)
    prefix = settings.kafka.topic_prefix

    def lookup(customer_id: str) -> Served:
        raw = client.get(f"{prefix}:reco:{customer_id}")
        served: Served = None if raw is None else json.loads(raw)
        return served

    return lookup


def run_against_redis(
    loop: ClosedLoop, settings: Settings, producer: EventProducer, visits: int,
    *, rate: float = 0.0,
) -> dict[str, int]:  # fmt: skip
    """``visits`` visits reacting to the lists in Redis; events go out through ``producer``.

    ``rate`` caps visits per wall-clock second (0 = as fast as possible).
    """
    from cxstream.simulate.pacing import TokenBucket

    lookup = redis_lookup(settings)
    bucket = TokenBucket(rate) if rate > 0 else None
    counts = {"visits": 0, "served_visits": 0, "events": 0}
    for customer in loop.visits(visits):
        if bucket is not None:
            bucket.take()
        events = loop.react(customer, lookup(customer.customer_id))
        counts["visits"] += 1
        counts["served_visits"] += bool(events)
        for event in events:
            producer.produce(event.name, event.record)
        counts["events"] += len(events)
    producer.flush()
    return counts
