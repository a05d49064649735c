"""Feedback with its lifecycle and response delays, and satisfaction surveys."""

from __future__ import annotations

import math

from cxstream.simulate import records
from cxstream.simulate.config import DAY_MS, HOUR_MS, MINUTE_MS
from cxstream.simulate.engine import Engine
from cxstream.simulate.population import Customer
from cxstream.simulate.reference import (
    CHANNEL_SOURCES,
    FEEDBACK_CATEGORIES,
    FEEDBACK_TEXTS,
    RESPONSE_NOTES,
    SURVEY_COMMENTS,
)

#: feedback channel of a visit's channel (feedback_submitted has its own channel enum)
_FEEDBACK_CHANNEL = {
    "web": "web",
    "app": "app",
    "social": "social",
    "chat": "chat",
    "phone": "phone",
    "branch": "branch",
    "atm": "branch",
}
_SURVEY_CHANNEL = {"email": "web", "survey": "web"}
_SEVERITIES = ("low", "medium", "high", "critical")
_SEVERITY_WEIGHTS = (0.4, 0.4, 0.15, 0.05)
_ANSWER_WINDOW_MS = DAY_MS
#: answered feedback: first response after a log-normal delay (median 3 h) inside 24 h
_RESPONSE_MEDIAN_LOG = math.log(3 * HOUR_MS)
_LATE_FACTOR = 1.5
_VISIT_DIMENSIONS = ("information_access", "personalisation", "security", "overall")


class Surveys:
    """Survey answers: score = 100 - deficit, the deficit exponential around (100 - mean)."""

    def __init__(self, eng: Engine) -> None:
        self.eng = eng
        self.deficits = {d: 100.0 - m for d, m in eng.config.survey_means.items()}

    def score(self, customer: Customer, dimension: str, factor: float = 1.0) -> int:
        mean = self.deficits[dimension] * customer.satisfaction * factor
        deficit = self.eng.rng.expovariate(1.0 / mean) if mean > 0 else 0.0
        return 100 - min(100, int(deficit + 0.5))

    def after_visit(self, customer: Customer, t: int, channel: str) -> None:
        eng = self.eng
        rng = eng.rng
        year, month, _ = eng.local_day(t)
        survey_id = f"srv-{year:04d}{month:02d}-relationship"
        for dimension in _VISIT_DIMENSIONS:
            if dimension == "personalisation" and not customer.consents["personalisation"]:
                continue
            if rng.random() < 0.9:
                score = self.score(customer, dimension)
                self._answer(customer, t, survey_id, dimension, score, channel)
            t += 5_000 + int(rng.random() * 20_000)

    def after_feedback(self, customer: Customer, t: int, channel: str, late: bool) -> None:
        # an answer after the 24 h target leaves customers half as unhappy again; they are few
        # (unanswered_share) and answer the survey only once resolved, so the mean stays close
        score = self.score(customer, "feedback_handling", _LATE_FACTOR if late else 1.0)
        self._answer(customer, t, "srv-post-feedback", "feedback_handling", score, channel)
        score = self.score(customer, "overall")
        self._answer(customer, t + 8_000, "srv-post-feedback", "overall", score, channel)

    def _answer(
        self, customer: Customer, t: int, survey_id: str, dimension: str, score: int, channel: str
    ) -> None:
        eng = self.eng
        comment = eng.rng.choice(SURVEY_COMMENTS) if eng.rng.random() < 0.1 else None
        eng.push(
            t,
            "survey_response",
            records.survey_response(
                eng.uuid(), t, customer.customer_id, survey_id, dimension, score, channel, comment
            ),
        )


class FeedbackDesk:
    """Feedback items and every status change of their lifecycle, with realistic delays."""

    def __init__(self, eng: Engine, surveys: Surveys) -> None:
        self.eng = eng
        self.surveys = surveys
        cfg = eng.config
        self.unanswered = cfg.unanswered_share
        self.late_share = cfg.late_feedback_share
        self.late_low, self.late_high = cfg.late_feedback_delay_ms

    def submit(self, customer: Customer, t0: int, visit_channel: str) -> None:
        eng = self.eng
        rng = eng.rng
        r = rng.random()
        if r < 0.08:
            channel = "email"
        elif r < 0.12:
            channel = "survey"
        else:
            channel = _FEEDBACK_CHANNEL[visit_channel]
        category = rng.choice(FEEDBACK_CATEGORIES[channel])
        department = {"app_bug": "it", "fraud": "risk_control"}.get(category, "customer_service")
        severity = "high" if category == "fraud" else rng.choices(_SEVERITIES, _SEVERITY_WEIGHTS)[0]
        text = rng.choice(FEEDBACK_TEXTS[category])
        if customer.phone is not None and rng.random() < 0.15:
            text += f" - please call me on {customer.phone}"  # PII inside free text, as in life
        email = customer.email if channel == "email" or rng.random() < 0.3 else None
        phone = customer.phone if channel == "phone" or rng.random() < 0.3 else None
        feedback_id = eng.hex_id("fb-")
        # late arrival: submitted at t0 (the SLA clock starts there) but published hours later
        late = rng.random() < self.late_share
        arrival = t0
        if late:
            arrival += self.late_low + int(rng.random() * (self.late_high - self.late_low))
        record = records.feedback_submitted(
            eng.uuid(), t0, customer.customer_id, feedback_id, channel, category, severity,
            department, text, email, phone, CHANNEL_SOURCES[channel],
        )  # fmt: skip
        if not eng.push(arrival, "feedback_submitted", record):
            return
        self._lifecycle(customer, feedback_id, t0, arrival, channel, department)

    def _lifecycle(
        self,
        customer: Customer,
        feedback_id: str,
        t0: int,
        arrival: int,
        channel: str,
        department: str,
    ) -> None:
        eng = self.eng
        rng = eng.rng
        cid = customer.customer_id
        online = channel in ("app", "web", "chat", "social")
        if online:  # automatic receipt
            ack = arrival + 5_000 + int(rng.random() * 115_000)
        else:
            ack = arrival + min(int(rng.expovariate(1 / (20 * MINUTE_MS))), 2 * HOUR_MS)
        self._status(ack, cid, feedback_id, "acknowledged", None, None, None)
        ready = ack
        if department != "customer_service" or rng.random() < 0.15:
            if department == "customer_service":
                department = rng.choice(("it", "risk_control"))
            ready = ack + min(int(rng.expovariate(1 / (30 * MINUTE_MS))), 2 * HOUR_MS)
            self._status(ready, cid, feedback_id, "assigned", department, None, None)

        unanswered = rng.random() < self.unanswered
        if unanswered:
            respond = t0 + _ANSWER_WINDOW_MS + MINUTE_MS + int(rng.expovariate(1 / (10 * HOUR_MS)))
        else:
            while True:
                delay = int(rng.lognormvariate(_RESPONSE_MEDIAN_LOG, 1.1))
                if delay < _ANSWER_WINDOW_MS - MINUTE_MS:
                    break
            respond = max(t0 + delay, ready + 5 * MINUTE_MS + int(rng.random() * 25 * MINUTE_MS))
            respond = min(respond, t0 + _ANSWER_WINDOW_MS - MINUTE_MS)
        # the 24/7 service desk answers the customer, also for items another department owns;
        # the agent opens the customer's record before answering (normal staff access)
        looked = respond - 90_000
        agent = eng.pop.pick_staff(rng, "customer_service", eng.hour_of_week(looked))
        eng.push(
            looked,
            "access_event",
            records.access(
                eng.uuid(), looked, agent.staff_id, "staff", "record_view", "crm-audit",
                target_customer_id=cid, staff_team=agent.team, ip=agent.ip,
                device_id=agent.device_id, user_agent="CXBank-Desk/5.2",
            ),
        )  # fmt: skip
        note = rng.choice(RESPONSE_NOTES)
        self._status(respond, cid, feedback_id, "responded", None, agent.staff_id, note)

        r = rng.random()
        if r < 0.1:
            return  # still open at the end of what we simulate
        if r < 0.3:
            waiting = respond + 60_000
            self._status(waiting, cid, feedback_id, "awaiting_customer", None, agent.staff_id, None)
            resolved = waiting + int(rng.expovariate(1 / (8 * HOUR_MS)))
        else:
            resolved = respond + int(rng.expovariate(1 / (3 * HOUR_MS)))
        self._status(resolved, cid, feedback_id, "resolved", None, agent.staff_id, None)
        if rng.random() < 0.07:
            reopened = resolved + int(rng.expovariate(1 / (12 * HOUR_MS)))
            self._status(reopened, cid, feedback_id, "reopened", None, None, None)
            again = reopened + int(rng.expovariate(1 / (4 * HOUR_MS)))
            note = rng.choice(RESPONSE_NOTES)
            self._status(again, cid, feedback_id, "responded", None, agent.staff_id, note)
            resolved = again + int(rng.expovariate(1 / (3 * HOUR_MS)))
            self._status(resolved, cid, feedback_id, "resolved", None, agent.staff_id, None)
        if rng.random() < 0.3:
            survey_t = resolved + int(rng.expovariate(1 / (2 * HOUR_MS)))
            self.surveys.after_feedback(
                customer, survey_t, _SURVEY_CHANNEL.get(channel, channel), unanswered
            )

    def _status(
        self,
        t: int,
        customer_id: str,
        feedback_id: str,
        status: str,
        department: str | None,
        agent_id: str | None,
        note: str | None,
    ) -> None:
        eng = self.eng
        eng.push(
            t,
            "feedback_status_changed",
            records.feedback_status(
                eng.uuid(), t, customer_id, feedback_id, status, department, agent_id, note
            ),
        )
