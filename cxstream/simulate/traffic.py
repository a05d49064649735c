"""The event generator: a seeded, reproducible stream of a bank's traffic.

The simulated clock advances in one-minute slices. In each slice every channel gets a Poisson
number of customer visits whose mean follows that channel's hour-of-week curve; visits,
payments, feedback lifecycles and injected scenarios push their events (some hours ahead) into
one queue ordered by publish time, and everything due before the slice end is yielded. Late
feedback is queued at its arrival time but carries its earlier submission time as
``occurred_at``, so the output is in nondecreasing *publish* order while ``occurred_at`` can lag.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Generator, Iterator
from itertools import chain, islice
from typing import Any, NamedTuple

from cxstream.simulate import records
from cxstream.simulate.activities import Behaviours
from cxstream.simulate.catalogue import PRODUCT_TYPES
from cxstream.simulate.config import DAY_MS, HOUR_MS, MINUTE_MS, SimulationConfig
from cxstream.simulate.engine import Engine
from cxstream.simulate.feedback import FeedbackDesk, Surveys
from cxstream.simulate.labels import LabelSink
from cxstream.simulate.population import Customer, build_population
from cxstream.simulate.reference import CHANNEL_SOURCES, ERASURE_REASONS
from cxstream.simulate.rhythm import poisson, week_curve
from cxstream.simulate.scenarios import inject_scenarios

SLICE_MS = MINUTE_MS


class SimEvent(NamedTuple):
    """One generated event: the schema name and a record valid against its latest version."""

    name: str
    record: dict[str, Any]


def _event(name: str, record: dict[str, Any]) -> SimEvent:
    # tuple.__new__ skips NamedTuple's Python-level __new__ (a third of a microsecond per event)
    return tuple.__new__(SimEvent, (name, record))


def generate(
    config: SimulationConfig, labels: LabelSink | None = None
) -> Generator[SimEvent, None, None]:
    """Yield the events of ``config`` in publish order; scenario labels go to ``labels``.

    Deterministic: the same config gives the same events byte for byte (ids included), and no
    clock, environment or service is consulted. A label is written when the last event of its
    scenario has been yielded; when the run stops early (``max_events``) or the iterator is
    closed, scenarios already under way are written with ``complete=False``.
    """
    population = build_population(config)
    eng = Engine(config, population, random.Random(f"{config.seed}:traffic"))
    surveys = Surveys(eng)
    acts = Behaviours(eng, FeedbackDesk(eng, surveys), surveys)
    events = chain(_registrations(eng, population.customers), _slices(eng, acts, labels))
    try:
        # islice keeps the per-event path in C; the slices generator runs lazily, so a run
        # bounded by max_events stops simulating as soon as it has enough
        yield from islice(events, config.max_events)
    finally:
        for tracker in eng.trackers:
            tracker.flush_partial()


def _registrations(eng: Engine, customers: list[Customer]) -> Iterator[SimEvent]:
    """The core-banking snapshot at the start: every customer and the products they hold."""
    t = eng.start_ms
    for c in customers:
        yield _event("customer_registered", records.customer_registered(
            eng.uuid(), t, c.customer_id, c.full_name, c.email, c.phone, c.national_id,
            c.birth_year, c.city.name, c.risk_profile, c.segment, c.customer_since_ms,
        ))  # fmt: skip
        for product in sorted(c.holdings):
            yield _event("product_holding_changed", records.product_holding(
                eng.uuid(), t, c.customer_id, product, PRODUCT_TYPES[product], "opened", None,
                "branch", "core-banking",
            ))  # fmt: skip


def _slices(eng: Engine, acts: Behaviours, labels: LabelSink | None) -> Iterator[SimEvent]:
    inject_scenarios(eng, labels)
    cfg = eng.config
    pop = eng.pop
    rng = eng.rng
    heap = eng.heap
    heappop = heapq.heappop
    new = tuple.__new__
    per_slice = cfg.customers * SLICE_MS / DAY_MS
    total_share = sum(cfg.channel_shares.values())
    wf = cfg.weekend_factor
    channel_tables = [
        (channel, [v * per_slice * cfg.visits_per_customer_per_day * share / total_share
                   for v in week_curve(channel, wf)])
        for channel, share in cfg.channel_shares.items()
        if share > 0
    ]  # fmt: skip
    card_table = [
        v * per_slice * cfg.card_payments_per_customer_per_day for v in week_curve("shopping", wf)
    ]
    browse_table = [
        v * per_slice * cfg.anonymous_browsing_per_customer_per_day
        for v in week_curve("browsing", wf)
    ]
    loyalty = cfg.channel_loyalty
    paydays: dict[int, list[Customer]] = {}
    for c in pop.customers:
        if c.payday:
            paydays.setdefault(c.payday, []).append(c)
    erasures = sorted((c.erase_at_ms, c.index) for c in pop.customers if c.erase_at_ms is not None)
    next_erasure = 0
    day: tuple[int, int, int] | None = None
    end = eng.end_ms
    t = eng.start_ms
    while end is None or t < end:
        how = eng.hour_of_week(t)
        slice_end = t + SLICE_MS
        today = eng.local_day(t)
        if today != day:
            day = today
            _pay_salaries(eng, acts, paydays.get(today[2], ()), t)
        while next_erasure < len(erasures) and erasures[next_erasure][0] < slice_end:
            at, index = erasures[next_erasure]
            _erase(eng, pop.customers[index], at)
            next_erasure += 1
        for channel, table in channel_tables:
            for _ in range(poisson(rng, table[how])):
                customer = pop.pick_customer(rng, channel, loyalty)
                acts.visit(channel, customer, t + int(rng.random() * SLICE_MS))
        for _ in range(poisson(rng, card_table[how])):
            customer = pop.pick_customer(rng, None, 0.0)
            acts.card_payment(customer, t + int(rng.random() * SLICE_MS))
        for _ in range(poisson(rng, browse_table[how])):
            acts.anonymous_browse(t + int(rng.random() * SLICE_MS))
        acts.staff_background(t, SLICE_MS, how)
        while heap and heap[0][0] < slice_end:
            _, _, name, record, tracker = heappop(heap)
            if tracker is not None:
                tracker.emitted(record)
            yield new(SimEvent, (name, record))
        t = slice_end


def _pay_salaries(eng: Engine, acts: Behaviours, customers: Any, now: int) -> None:
    """Salaries land between 08:00 and 10:00 local time on each customer's payday."""
    midnight = eng.local_midnight_ms(now)
    for c in customers:
        at = midnight + 8 * HOUR_MS + int(eng.rng.random() * 2 * HOUR_MS)
        if at >= now:
            acts.salary(c, at)


def _erase(eng: Engine, c: Customer, at: int) -> None:
    channel = eng.rng.choice(("branch", "app", "web"))
    eng.push(at, "erasure_requested", records.erasure_requested(
        eng.uuid(), at, c.customer_id, eng.hex_id("er-"), channel,
        eng.rng.choice(ERASURE_REASONS), CHANNEL_SOURCES[channel],
    ))  # fmt: skip
