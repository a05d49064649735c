"""The pure SLA engine: each level fires once at its time, late marking, breach on arrival,
responses stop and reopens restart the clock, pauses, replays fire nothing new."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from cxstream.settings import Settings, SlaSettings
from processors.sla.engine import STATUS_CHANGED, SUBMITTED, SlaEngine, alert_id
from processors.sla.lifecycle import Item
from processors.sla.policy import HOUR_MS, SlaPolicy

MINUTE_MS = 60_000
T0 = 1_800_000_000_000  # a submission time (epoch ms)
WARN = T0 + round(0.8 * 24 * HOUR_MS)
BREACH = T0 + 24 * HOUR_MS
ESC1 = BREACH + 24 * HOUR_MS
ESC2 = BREACH + 48 * HOUR_MS


class Harness:
    """An engine over a dict, with the writes it made."""

    def __init__(self, **sla: Any) -> None:
        settings = Settings(sla=SlaSettings(**sla))
        self.items: dict[str, Item] = {}
        self.writes = 0
        self.engine = SlaEngine(
            SlaPolicy.from_settings(settings),
            self.items,
            self.write,
            pseudonymise=lambda value: f"ps-{len(value)}",
            link_base_url="https://cx.test/",
            late_after_ms=1000,
        )

    def write(self, partition: int, key: str, value: Item | None) -> None:
        self.writes += 1
        if value is None:
            self.items.pop(key, None)
        else:
            self.items[key] = value

    def submit(self, feedback_id: str = "fb-1", at: int = T0, **extra: Any) -> dict[str, Any]:
        record = {
            "event_id": str(uuid.uuid4()),
            "occurred_at": at,
            "customer_id": "C0000042",
            "feedback_id": feedback_id,
            "channel": "app",
            "category": "fees",
            "severity": "medium",
            "department": "customer_service",
            "text": "secret words of the customer",
            **extra,
        }
        self.engine.apply_batch([(3, SUBMITTED, record)])
        return record

    def status(
        self, status: str, at: int, feedback_id: str = "fb-1", department: str | None = None
    ) -> dict[str, Any]:
        record = {
            "event_id": str(uuid.uuid4()),
            "occurred_at": at,
            "customer_id": "C0000042",
            "feedback_id": feedback_id,
            "status": status,
            "department": department,
            "note": "internal note",
        }
        self.engine.apply_batch([(3, STATUS_CHANGED, record)])
        return record

    def tick(self, now_ms: int) -> list[tuple[str, str, int]]:
        alerts = self.engine.tick(now_ms, [3])
        return [(a["subject_id"], a["level"], a["late_ms"]) for a in alerts]

    def levels_until(self, end_ms: int, step_ms: int = 10 * MINUTE_MS) -> list[tuple[str, int]]:
        """Tick every ``step_ms`` up to ``end_ms``: (level, tick time) of everything fired."""
        fired = []
        for now in range(T0, end_ms + 1, step_ms):
            fired.extend((level, now) for _, level, _ in self.tick(now))
        return fired


def test_each_level_fires_once_at_its_time() -> None:
    h = Harness()
    h.submit()
    fired = h.levels_until(ESC2 + 24 * HOUR_MS, step_ms=MINUTE_MS)
    assert [level for level, _ in fired] == ["warning", "breach", "escalation_1", "escalation_2"]
    due = [WARN, BREACH, ESC1, ESC2]
    # fired at the first tick at or after the due time
    assert all(0 <= now - d < MINUTE_MS for (_, now), d in zip(fired, due, strict=True))


def test_alert_record_fields_ids_and_no_pii() -> None:
    h = Harness()
    h.submit()
    (alert,) = h.engine.tick(WARN + 200, [3])
    assert alert["alert_id"] == alert["event_id"] == alert_id("fb-1", 0, "warning")
    assert alert["alert_id"] != alert_id("fb-1", 0, "breach") != alert_id("fb-1", 1, "warning")
    assert alert["kind"] == "feedback_sla"
    assert alert["department"] == "customer_service"
    assert alert["subject_id"] == "fb-1"
    assert alert["customer_pseudonym"] == "ps-8"
    assert alert["deadline_at"] == WARN
    assert alert["fired_at"] == WARN + 200
    assert alert["late_ms"] == 200
    assert alert["details"]["late"] == "false"
    assert alert["link"] == "https://cx.test/feedback/fb-1"
    text = repr(alert)
    assert "C0000042" not in text
    assert "secret" not in text
    assert "internal note" not in text
    # the record is a valid alert event
    from streams.codec import build_codec

    build_codec(Settings()).encode("alert", alert)


def test_downtime_fires_due_levels_at_once_marked_late() -> None:
    h = Harness()
    h.submit()
    late = h.tick(ESC1 + 5 * MINUTE_MS)  # nothing ticked from submission to after escalation_1
    assert [(level, ms) for _, level, ms in late] == [
        ("warning", ESC1 + 5 * MINUTE_MS - WARN),
        ("breach", ESC1 + 5 * MINUTE_MS - BREACH),
        ("escalation_1", 5 * MINUTE_MS),
    ]
    alerts = h.engine.counts
    assert alerts["fired_late"] == 3
    assert h.tick(ESC1 + 6 * MINUTE_MS) == []


def test_submission_already_past_its_deadline_breaches_on_arrival() -> None:
    h = Harness()
    now = T0 + 30 * HOUR_MS
    h.submit(at=T0)  # arrives 30 h after it was submitted
    assert [level for _, level, _ in h.tick(now)] == ["warning", "breach"]
    assert h.levels_until(ESC1 - MINUTE_MS) == []


def test_response_stops_the_clock() -> None:
    h = Harness()
    h.submit()
    h.status("acknowledged", T0 + MINUTE_MS)
    assert h.levels_until(WARN + HOUR_MS, step_ms=MINUTE_MS) == [("warning", WARN)]
    h.status("responded", WARN + 2 * HOUR_MS)
    assert h.levels_until(ESC2 + HOUR_MS) == []


def test_response_arriving_late_but_given_in_time_prevents_the_alerts() -> None:
    h = Harness()
    h.submit()
    h.status("responded", T0 + HOUR_MS)  # published late, applied before the tick
    assert h.tick(ESC2 + HOUR_MS) == []


def test_reopen_restarts_the_clock_with_a_new_cycle() -> None:
    h = Harness()
    h.submit()
    h.status("responded", T0 + HOUR_MS)
    h.status("resolved", T0 + 2 * HOUR_MS)
    reopened = T0 + 10 * HOUR_MS
    h.status("reopened", reopened)
    (alert,) = h.engine.tick(reopened + round(0.8 * 24 * HOUR_MS), [3])
    assert alert["level"] == "warning"
    assert alert["details"]["cycle"] == "1"
    assert alert["alert_id"] == alert_id("fb-1", 1, "warning")
    assert [lv for _, lv, _ in h.tick(reopened + 24 * HOUR_MS)] == ["breach"]


def test_awaiting_customer_pauses_until_the_next_status() -> None:
    h = Harness()
    h.submit()
    h.status("awaiting_customer", T0 + HOUR_MS)
    assert h.tick(BREACH + HOUR_MS) == []  # paused: nothing falls due
    h.status("acknowledged", T0 + 6 * HOUR_MS)  # the customer came back after 5 h
    assert h.tick(WARN + 5 * HOUR_MS - 1) == []
    assert [lv for _, lv, _ in h.tick(WARN + 5 * HOUR_MS)] == ["warning"]
    assert [lv for _, lv, _ in h.tick(BREACH + 5 * HOUR_MS)] == ["breach"]


def test_reassignment_routes_later_alerts_to_the_new_department() -> None:
    h = Harness()
    h.submit()
    (warning,) = h.engine.tick(WARN, [3])
    h.status("assigned", WARN + MINUTE_MS, department="risk_control")
    (breach,) = h.engine.tick(BREACH, [3])
    assert (warning["department"], breach["department"]) == ("customer_service", "risk_control")


def test_replay_of_the_same_events_fires_nothing_new() -> None:
    h = Harness()
    submitted = h.submit()
    ack = h.status("acknowledged", T0 + MINUTE_MS)
    assert len(h.tick(BREACH)) == 2
    before = dict(h.items)
    # crash after the marks: the events come again (same event ids), state is unchanged
    h.engine.apply_batch([(3, SUBMITTED, submitted), (3, STATUS_CHANGED, ack)])
    assert h.items == before
    assert h.engine.counts["duplicates"] == 2
    # a restart rebuilds the index from the items: still nothing due until escalation_1
    h.engine.index.drop(3)
    assert h.engine.rebuild([3]) == 1
    assert h.tick(ESC1 - 1) == []
    assert [lv for _, lv, _ in h.tick(ESC1)] == ["escalation_1"]


def test_crash_before_marking_re_emits_the_same_alert_ids() -> None:
    h = Harness()
    h.submit()
    firings = h.engine.due(BREACH, [3])  # emitted, then the worker dies before `fired`
    first = [a["alert_id"] for f in firings for a in f.alerts]
    h.engine.index.drop(3)
    h.engine.rebuild([3])  # the restarted worker's index, from the table
    again = [a["alert_id"] for a in h.engine.tick(BREACH + 500, [3])]
    assert again == first == [alert_id("fb-1", 0, "warning"), alert_id("fb-1", 0, "breach")]
    assert h.tick(BREACH + 1000) == []


def test_undelivered_alerts_are_put_back_and_fire_at_the_next_tick() -> None:
    h = Harness()
    h.submit()
    firings = h.engine.due(WARN, [3])
    assert h.engine.due(WARN + 1, [3]) == []  # in flight: out of the index
    h.engine.restore(firings)
    assert [lv for _, lv, _ in h.tick(WARN + 2)] == ["warning"]


def test_status_before_submission_and_out_of_order_arrival_give_the_same_clock() -> None:
    a, b = Harness(), Harness()
    a.submit()
    a.status("awaiting_customer", T0 + HOUR_MS)
    a.status("assigned", T0 + 3 * HOUR_MS, department="it")
    b.status("assigned", T0 + 3 * HOUR_MS, department="it")
    b.status("awaiting_customer", T0 + HOUR_MS)
    assert b.tick(BREACH + 10 * HOUR_MS) == []  # no submission yet: no clock
    b.submit()
    # paused 2 h: warning and breach 2 h later than without the pause
    expected = [("fb-1", "warning", BREACH - WARN), ("fb-1", "breach", 0)]
    assert a.tick(BREACH + 2 * HOUR_MS) == expected == b.tick(BREACH + 2 * HOUR_MS)


def test_a_second_submission_of_the_same_item_does_not_restart_it() -> None:
    h = Harness()
    h.submit()
    h.submit(at=T0 + 10 * HOUR_MS)  # other event id, same feedback id
    assert [lv for _, lv, _ in h.tick(WARN)] == ["warning"]


def test_closed_items_are_dropped_after_the_retention() -> None:
    h = Harness(closed_retention_hours=48)
    h.submit()
    h.status("responded", T0 + HOUR_MS)
    h.engine.retention_ms = 48 * HOUR_MS
    h.engine.index.drop(3)
    h.engine.rebuild([3])
    assert h.tick(T0 + 48 * HOUR_MS) == []
    assert "fb-1" in h.items
    h.tick(T0 + 49 * HOUR_MS)
    assert "fb-1" not in h.items
    assert h.engine.counts["dropped"] == 1


def test_overrides_change_due_times_per_item() -> None:
    h = Harness(overrides=({"severity": "critical", "hours": 2},))
    h.submit("fb-c", severity="critical")
    h.submit("fb-m")
    fired = h.engine.tick(T0 + 2 * HOUR_MS, [3])
    assert [(a["subject_id"], a["level"]) for a in fired] == [
        ("fb-c", "warning"),
        ("fb-c", "breach"),
    ]
    assert fired[1]["details"]["rule"] == "override[0]"


@pytest.mark.parametrize("n", [1, 50])
def test_tick_touches_only_the_items_due(n: int) -> None:
    h = Harness()
    for i in range(1000):
        h.submit(f"fb-{i}", at=T0 + i * MINUTE_MS)
    writes = h.writes
    fired = h.engine.tick(WARN + (n - 1) * MINUTE_MS, [3])
    assert len(fired) == n
    assert h.writes - writes == n  # one mark per fired item, the rest untouched
