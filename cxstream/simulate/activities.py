"""What customers and staff do: visits on each channel, payments, browsing, record look-ups.

Every visit of a customer produces exactly one information or service request on its channel,
so the share of requests per channel equals the configured channel shares.
"""

from __future__ import annotations

import math
from bisect import bisect
from collections.abc import Callable
from itertools import accumulate

from cxstream.simulate import records
from cxstream.simulate.catalogue import PRODUCT_TYPES, PRODUCTS
from cxstream.simulate.engine import Engine
from cxstream.simulate.feedback import FeedbackDesk, Surveys
from cxstream.simulate.population import (
    Customer,
    StaffMember,
    click_probability,
    conversion_probability,
)
from cxstream.simulate.reference import (
    CHANNEL_SOURCES,
    CHAT_OPENERS,
    COUNTRY_CURRENCY,
    INFO_TOPICS,
    MERCHANTS,
    SEARCH_QUERIES,
    SERVICE_TOPICS,
    SPEND_CATEGORIES,
    City,
)
from cxstream.simulate.rhythm import poisson

_RESOLVED = {
    "web": 0.85, "app": 0.88, "social": 0.7, "chat": 0.8, "phone": 0.9, "branch": 0.95,
    "atm": 0.97,
}  # fmt: skip
_DESK_AGENT = "CXBank-Desk/5.2"
_N_INFO = len(INFO_TOPICS)
_N_SERVICE = len(SERVICE_TOPICS)

Visit = Callable[[Customer, int, City], int]


class Behaviours:
    def __init__(self, eng: Engine, desk: FeedbackDesk, surveys: Surveys) -> None:
        self.eng = eng
        self.rng = eng.rng
        self.desk = desk
        self.surveys = surveys
        cfg = eng.config
        self.feedback_rate = cfg.feedback_per_visit
        self.survey_rate = cfg.survey_per_visit
        self.consent_rate = cfg.consent_change_per_visit
        self.rec_rate = cfg.recommendation_per_online_visit
        self.customers = eng.pop.customers
        self.visits: dict[str, Visit] = {
            "web": self._web,
            "app": self._app,
            "social": self._social,
            "chat": self._chat,
            "phone": self._phone,
            "branch": self._branch,
            "atm": self._atm,
        }
        # per local hour of week: staff on shift, their cumulative look-up rates (per hour)
        self.on_shift: list[tuple[list[StaffMember], list[float]]] = []
        for hour in range(168):
            members = [s for s in eng.pop.staff if s.on_shift(hour)]
            self.on_shift.append((members, list(accumulate(s.views_per_hour for s in members))))

    # -- visits -----------------------------------------------------------------------------

    def visit(self, channel: str, c: Customer, t: int) -> None:
        if c.erase_at_ms is not None and t >= c.erase_at_ms:
            return  # gone: erased customers do not come back
        city = c.city
        if c.trips:
            t, city = c.reachable(t)
        end = self.visits[channel](c, t, city)
        rng = self.rng
        if rng.random() < self.feedback_rate:
            self.desk.submit(c, end + 30_000 + int(rng.random() * 600_000), channel)
        if rng.random() < self.survey_rate:
            self.surveys.after_visit(c, end + int(rng.expovariate(1 / 1_800_000)), channel)
        if rng.random() < self.consent_rate:
            self._consent(c, end + 20_000, channel)

    def _request(
        self, c: Customer, t: int, channel: str, session: str | None, duration: int | None
    ) -> None:
        rng = self.rng
        if rng.random() < 0.65:
            action, topic = "information_request", INFO_TOPICS[int(rng.random() * _N_INFO)]
        else:
            action, topic = "service_request", SERVICE_TOPICS[int(rng.random() * _N_SERVICE)]
        resolved = rng.random() < _RESOLVED[channel]
        self.eng.push(
            t,
            "channel_interaction",
            records.interaction(
                self.eng.uuid(), t, c.customer_id, None, channel, action, topic, session,
                duration, resolved, None, CHANNEL_SOURCES[channel],
            ),
        )  # fmt: skip

    def _view(
        self,
        customer_id: str | None,
        anonymous_id: str | None,
        t: int,
        channel: str,
        action: str,
        session: str | None,
        search: str | None = None,
    ) -> None:
        rng = self.rng
        self.eng.push(
            t,
            "channel_interaction",
            records.interaction(
                self.eng.uuid(), t, customer_id, anonymous_id, channel, action,
                INFO_TOPICS[int(rng.random() * _N_INFO)], session,
                2_000 + int(rng.random() * 60_000), None, search, CHANNEL_SOURCES[channel],
            ),
        )  # fmt: skip

    def _ip(self, c: Customer, city: City) -> str:
        rng = self.rng
        if city is c.city and rng.random() < 0.7:
            return c.home_ip
        # mobile carrier or hotel network in the city the customer is in
        second = city.key + 100 if city is c.city else city.key
        return f"10.{second}.{int(rng.random() * 256)}.{1 + int(rng.random() * 254)}"

    def _login(
        self, c: Customer, t: int, channel: str, device: int, city: City, ip: str
    ) -> tuple[int, int]:
        """Login (with the odd typo, reset or new phone); returns (time after, device index)."""
        eng = self.eng
        rng = self.rng
        src = CHANNEL_SOURCES[channel]
        cid = c.customer_id
        if channel == "app" and rng.random() < 0.004:  # new phone
            _, kind, ua = c.devices[0]
            c.devices[0] = (eng.hex_id("d-"), kind, ua)
            device = 0
            dev_id, _, ua = c.devices[0]
            eng.push(t, "access_event", records.access(
                eng.uuid(), t, cid, "customer", "device_change", src, ip=ip, device_id=dev_id,
                user_agent=ua, city=city, auth_method="otp",
            ))  # fmt: skip
            t += 30_000
        dev_id, _, ua = c.devices[device]
        if channel == "app":
            auth = "biometric" if rng.random() < 0.7 else "password"
        else:
            auth = "otp" if rng.random() < 0.3 else "password"
        if rng.random() < 0.04:  # mistyped password
            eng.push(t, "access_event", records.access(
                eng.uuid(), t, cid, "customer", "login_failure", src, ip=ip, device_id=dev_id,
                user_agent=ua, city=city, auth_method="password",
            ))  # fmt: skip
            t += 8_000 + int(rng.random() * 22_000)
            if rng.random() < 0.15:
                eng.push(t, "access_event", records.access(
                    eng.uuid(), t, cid, "customer", "password_reset", src, ip=ip,
                    device_id=dev_id, user_agent=ua, city=city, auth_method="otp",
                ))  # fmt: skip
                t += 60_000 + int(rng.random() * 120_000)
        eng.push(t, "access_event", records.access(
            eng.uuid(), t, cid, "customer", "login_success", src, ip=ip, device_id=dev_id,
            user_agent=ua, city=city, auth_method=auth,
        ))  # fmt: skip
        return t, device

    def _online(self, c: Customer, t: int, city: City, channel: str) -> int:
        """A web or app session: login, pages, one request, maybe offers, a transfer, logout."""
        eng = self.eng
        rng = self.rng
        web = channel == "web"
        device = len(c.devices) - 1 if web else 0
        session = eng.hex_id("s-")
        ip = self._ip(c, city)
        cid = c.customer_id
        view = "page_view" if web else "screen_view"
        anon: str | None = None
        if web and rng.random() < 0.3:  # browsing before logging in: keyed by the cookie id
            anon = c.devices[device][0]
            for _ in range(1 + int(rng.random() * 2)):
                self._view(None, anon, t, channel, view, session)
                t += 5_000 + int(rng.random() * 40_000)
        t, device = self._login(c, t, channel, device, city, ip)
        for _ in range(1 + int(rng.random() * (4 if web else 6))):
            t += 4_000 + int(rng.random() * 35_000)
            # the first page after the login still carries the cookie id: the identity link
            self._view(cid, anon, t, channel, view, session)
            anon = None
        if rng.random() < 0.25:
            t += 5_000 + int(rng.random() * 20_000)
            self._view(cid, None, t, channel, "search", session, rng.choice(SEARCH_QUERIES))
        t += 5_000 + int(rng.random() * 60_000)
        self._request(c, t, channel, session, 20_000 + int(rng.random() * 240_000))
        if c.consents["personalisation"] and rng.random() < self.rec_rate:
            t = self._recommend(c, t + 2_000, channel)
        if rng.random() < (0.15 if web else 0.25):
            t += 10_000 + int(rng.random() * 60_000)
            t = self._transfer(c, t, channel, device, city, ip)
        if rng.random() < 0.5:
            t += 5_000 + int(rng.random() * 60_000)
            dev_id, _, ua = c.devices[device]
            eng.push(t, "access_event", records.access(
                eng.uuid(), t, cid, "customer", "logout", CHANNEL_SOURCES[channel], ip=ip,
                device_id=dev_id, user_agent=ua, city=city,
            ))  # fmt: skip
        return t

    def _web(self, c: Customer, t: int, city: City) -> int:
        return self._online(c, t, city, "web")

    def _app(self, c: Customer, t: int, city: City) -> int:
        return self._online(c, t, city, "app")

    def _social(self, c: Customer, t: int, city: City) -> int:
        rng = self.rng
        if rng.random() < 0.4:
            self._view(c.customer_id, None, t, "social", "page_view", None)
            t += 10_000 + int(rng.random() * 60_000)
        self._request(c, t, "social", None, None)
        return t

    def _chat(self, c: Customer, t: int, city: City) -> int:
        eng = self.eng
        rng = self.rng
        session = eng.hex_id("chat-")
        started = t
        cid = c.customer_id
        agent: StaffMember | None = None
        joined: int | None = None
        if rng.random() < 0.35:  # the bot hands over to a human
            joined = t + 60_000 + int(rng.random() * 240_000)
            agent = self._staff_view("customer_service", joined + 10_000, cid)
        messages = 2 + int(rng.random() * 7)
        for _ in range(messages):
            t += 15_000 + int(rng.random() * 45_000)
            self._view(cid, None, t, "chat", "chat_message", session)
        if joined is not None:
            t = max(t, joined + 30_000)
        self._request(c, t, "chat", session, t - started)
        t += 5_000
        topic = INFO_TOPICS[int(rng.random() * _N_INFO)]
        eng.push(t, "chat_session", records.chat_session(
            eng.uuid(), t, cid, session, started, joined,
            agent.staff_id if agent is not None else None, messages * 2, rng.random() < 0.8,
            topic, rng.choice(CHAT_OPENERS),
        ))  # fmt: skip
        return t

    def _phone(self, c: Customer, t: int, city: City) -> int:
        eng = self.eng
        rng = self.rng
        duration = 60_000 + int(rng.expovariate(1 / 300_000))
        session = eng.hex_id("call-")
        self._view(c.customer_id, None, t, "phone", "call", session)
        if rng.random() < 0.7:  # not settled in the voice menu: an agent looks the customer up
            self._staff_view("customer_service", t + 40_000, c.customer_id)
        t += 30_000
        self._request(c, t, "phone", session, duration)
        return t + duration

    def _branch(self, c: Customer, t: int, city: City) -> int:
        eng = self.eng
        rng = self.rng
        session = eng.hex_id("visit-")
        self._view(c.customer_id, None, t, "branch", "branch_visit", session)
        t += 120_000 + int(rng.random() * 900_000)  # the queue
        self._staff_view("branch", t, c.customer_id)
        self._request(c, t + 30_000, "branch", session, 300_000 + int(rng.random() * 900_000))
        t += 60_000
        r = rng.random()
        if r < 0.04:
            self._open_product(c, t + 300_000, "branch", None)
        elif r < 0.05:
            held = sorted(p for p in c.holdings if p != "account.current")
            if held:
                product = held[int(rng.random() * len(held))]
                c.holdings.discard(product)
                eng.push(t, "product_holding_changed", records.product_holding(
                    eng.uuid(), t, c.customer_id, product, PRODUCT_TYPES[product], "closed",
                    None, "branch", "branch-crm",
                ))  # fmt: skip
        return t

    def _atm(self, c: Customer, t: int, city: City) -> int:
        eng = self.eng
        rng = self.rng
        session = eng.hex_id("atm-")
        self._view(c.customer_id, None, t, "atm", "atm_session", session)
        t += 20_000 + int(rng.random() * 40_000)
        self._request(c, t, "atm", session, 60_000 + int(rng.random() * 120_000))
        if rng.random() < 0.8:
            amount = (1 + int(rng.expovariate(1 / 6))) * 10_000  # multiples of 100 CNY
            eng.push(t, "transaction", records.transaction(
                eng.uuid(), t, c.customer_id, eng.hex_id("tx-"), c.account_id, amount,
                COUNTRY_CURRENCY[city.country], "debit", "cash", "atm", None, "atm-network",
            ))  # fmt: skip
        return t + 30_000

    # -- pieces of visits ---------------------------------------------------------------------

    def _recommend(self, c: Customer, t: int, channel: str) -> int:
        """The frontend shows up to three products; the hidden preferences drive the reaction."""
        eng = self.eng
        rng = self.rng
        candidates = [p.product_id for p in PRODUCTS if p.product_id not in c.holdings]
        if not candidates:
            return t
        shown = rng.sample(candidates, min(3, len(candidates)))
        rec_id = eng.hex_id("rec-")
        cid = c.customer_id
        src = CHANNEL_SOURCES[channel]
        for position, product in enumerate(shown, 1):
            eng.push(t, "recommendation_feedback", records.recommendation_feedback(
                eng.uuid(), t, cid, rec_id, product, "impression", position, channel, src,
            ))  # fmt: skip
        for position, product in enumerate(shown, 1):
            affinity = c.preferences[product]
            if rng.random() < click_probability(affinity, position):
                t += 2_000 + int(rng.random() * 18_000)
                eng.push(t, "recommendation_feedback", records.recommendation_feedback(
                    eng.uuid(), t, cid, rec_id, product, "click", position, channel, src,
                ))  # fmt: skip
                if rng.random() < conversion_probability(affinity):
                    t += 30_000 + int(rng.random() * 150_000)
                    eng.push(t, "recommendation_feedback", records.recommendation_feedback(
                        eng.uuid(), t, cid, rec_id, product, "convert", position, channel, src,
                    ))  # fmt: skip
                    self._open_product(c, t + 1_000, channel, rec_id, product)
                    t += 1_000
            elif rng.random() < 0.08:
                eng.push(t, "recommendation_feedback", records.recommendation_feedback(
                    eng.uuid(), t, cid, rec_id, product, "dismiss", position, channel, src,
                ))  # fmt: skip
        return t

    def _open_product(
        self, c: Customer, t: int, channel: str, rec_id: str | None, product: str | None = None
    ) -> None:
        eng = self.eng
        if product is None:  # an adviser's sale: customers take what they like
            candidates = [p.product_id for p in PRODUCTS if p.product_id not in c.holdings]
            if not candidates:
                return
            weights = [math.exp(c.preferences[p]) for p in candidates]
            product = self.rng.choices(candidates, weights)[0]
        c.holdings.add(product)
        eng.push(t, "product_holding_changed", records.product_holding(
            eng.uuid(), t, c.customer_id, product, PRODUCT_TYPES[product], "opened", rec_id,
            channel, CHANNEL_SOURCES[channel],
        ))  # fmt: skip

    def _transfer(self, c: Customer, t: int, channel: str, device: int, city: City, ip: str) -> int:
        eng = self.eng
        amount = int(self.rng.lognormvariate(math.log(2000.0 * c.spend_scale), 0.9)) * 100
        dev_id, _, ua = c.devices[device]
        src = CHANNEL_SOURCES[channel]
        eng.push(t, "access_event", records.access(
            eng.uuid(), t, c.customer_id, "customer", "transfer", src, ip=ip, device_id=dev_id,
            user_agent=ua, city=city, auth_method="otp", amount_minor=amount,
        ))  # fmt: skip
        t += 2_000
        eng.push(t, "transaction", records.transaction(
            eng.uuid(), t, c.customer_id, eng.hex_id("tx-"), c.account_id, amount, "CNY",
            "debit", "transfer", channel, None, "core-banking",
        ))  # fmt: skip
        return t

    def _consent(self, c: Customer, t: int, channel: str) -> None:
        rng = self.rng
        if c.consents["personalisation"]:
            consent = "personalisation" if rng.random() < 0.6 else "marketing"
        else:
            consent = "personalisation" if rng.random() < 0.3 else "marketing"
        granted = not c.consents[consent]
        c.consents[consent] = granted
        eng = self.eng
        eng.push(t, "consent_changed", records.consent_changed(
            eng.uuid(), t, c.customer_id, consent, granted, channel, CHANNEL_SOURCES[channel],
        ))  # fmt: skip

    def _staff_view(self, team: str, t: int, customer_id: str) -> StaffMember:
        """Someone of ``team`` on shift at ``t`` opens the customer's record."""
        eng = self.eng
        staff = eng.pop.pick_staff(self.rng, team, eng.hour_of_week(t))
        eng.push(t, "access_event", records.access(
            eng.uuid(), t, staff.staff_id, "staff", "record_view", "crm-audit",
            target_customer_id=customer_id, staff_team=staff.team, ip=staff.ip,
            device_id=staff.device_id, user_agent=_DESK_AGENT,
        ))  # fmt: skip
        return staff

    # -- background processes -----------------------------------------------------------------

    def card_payment(self, c: Customer, t: int) -> None:
        if c.erase_at_ms is not None and t >= c.erase_at_ms:
            return
        city = c.city
        if c.trips:
            t, city = c.reachable(t)
        rng = self.rng
        cum = c.spend_cum
        category, median, _ = SPEND_CATEGORIES[bisect(cum, rng.random() * cum[-1])]
        amount = int(median * c.spend_scale * rng.lognormvariate(0.0, 0.6) * 100) + 1
        eng = self.eng
        merchants = MERCHANTS[category]
        eng.push(t, "transaction", records.transaction(
            eng.uuid(), t, c.customer_id, eng.hex_id("tx-"), c.account_id, amount,
            COUNTRY_CURRENCY[city.country], "debit", category,
            "app" if rng.random() < 0.6 else "web", merchants[int(rng.random() * len(merchants))],
            "card-switch",
        ))  # fmt: skip

    def salary(self, c: Customer, t: int) -> None:
        if c.erase_at_ms is not None and t >= c.erase_at_ms:
            return
        eng = self.eng
        eng.push(t, "transaction", records.transaction(
            eng.uuid(), t, c.customer_id, eng.hex_id("tx-"), c.account_id, c.salary_minor,
            "CNY", "credit", "salary", "web", None, "core-banking",
        ))  # fmt: skip

    def anonymous_browse(self, t: int) -> None:
        rng = self.rng
        channel = "web" if rng.random() < 0.7 else "app"
        view = "page_view" if channel == "web" else "screen_view"
        anon = self.eng.hex_id("anon-")
        for _ in range(1 + int(rng.random() * 3)):
            self._view(None, anon, t, channel, view, None)
            t += 5_000 + int(rng.random() * 40_000)
        if rng.random() < 0.2:
            self._view(None, anon, t, channel, "search", None, rng.choice(SEARCH_QUERIES))

    def staff_background(self, slice_start: int, slice_ms: int, hour_of_week: int) -> None:
        """Record look-ups of staff on shift and API calls of service accounts in one slice."""
        eng = self.eng
        rng = self.rng
        customers = self.customers
        n_customers = len(customers)
        members, cum = self.on_shift[hour_of_week]
        if members:
            # one Poisson draw for the whole shift, then who looked (weighted by their rate)
            for _ in range(poisson(rng, cum[-1] * slice_ms / 3_600_000)):
                staff = members[bisect(cum, rng.random() * cum[-1])]
                t = slice_start + int(rng.random() * slice_ms)
                customer = customers[int(rng.random() * n_customers)]
                if customer.erase_at_ms is not None and t >= customer.erase_at_ms:
                    continue
                action = "record_export" if rng.random() < 0.03 else "record_view"
                eng.push(t, "access_event", records.access(
                    eng.uuid(), t, staff.staff_id, "staff", action, "crm-audit",
                    target_customer_id=customer.customer_id, staff_team=staff.team,
                    ip=staff.ip, device_id=staff.device_id, user_agent=_DESK_AGENT,
                ))  # fmt: skip
        for account in eng.pop.service_accounts:
            for _ in range(poisson(rng, account.views_per_hour * slice_ms / 3_600_000)):
                t = slice_start + int(rng.random() * slice_ms)
                customer = customers[int(rng.random() * n_customers)]
                if customer.erase_at_ms is not None and t >= customer.erase_at_ms:
                    continue
                target = customer.customer_id
                eng.push(t, "access_event", records.access(
                    eng.uuid(), t, account.staff_id, "staff", "api_call", "api-gateway",
                    target_customer_id=target, staff_team=account.team, ip=account.ip,
                    device_id=account.device_id, user_agent="cxbank-svc/3.1",
                    auth_method="api_key",
                ))  # fmt: skip
