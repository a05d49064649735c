"""The SQLite delivery log: final states survive reopening, acknowledgements per subject."""

from __future__ import annotations

from pathlib import Path

from cxstream.notify.delivery_log import DeliveryLog
from cxstream.notify.notification import Notification, level_rank


def alert(alert_id: str, level: str, subject: str = "fb-1") -> Notification:
    return Notification(alert_id, "feedback_sla", level, "customer_service", subject, 1, "s")


def test_final_state_survives_reopening_and_first_state_stays(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = DeliveryLog(path)
    log.record_attempt("a/ana/webhook", "a", "webhook", "ana", 1, ok=False, status=500, error="x")
    log.record_attempt("a/ana/webhook", "a", "webhook", "ana", 2, ok=True)
    log.finish("a/ana/webhook", "a", "delivered")
    log.close()
    again = DeliveryLog(path)
    assert again.state("a/ana/webhook") == "delivered"
    again.finish("a/ana/webhook", "a", "dead")  # a replay cannot overwrite the outcome
    assert again.state("a/ana/webhook") == "delivered"
    assert again.state("a/ben/webhook") is None
    assert again.attempts("a") == [
        ("a/ana/webhook", 1, False, 500),
        ("a/ana/webhook", 2, True, None),
    ]


def test_ack_of_unknown_alert_is_none(tmp_path: Path) -> None:
    assert DeliveryLog(tmp_path / "l.sqlite").acknowledge("nope") is None


def test_ack_is_per_subject_and_only_raises_the_bar(tmp_path: Path) -> None:
    log = DeliveryLog(tmp_path / "l.sqlite")
    for n in (alert("w", "warning"), alert("b", "breach"), alert("o", "breach", "fb-2")):
        log.remember(n)
    first = log.acknowledge("b", by="ana")
    assert first is not None
    assert first.level_rank == level_rank("breach")
    again = log.acknowledge("w")  # lower level: keeps the breach bar and the first time
    assert again is not None
    assert (again.level_rank, again.at_ms, again.alert_id) == (first.level_rank, first.at_ms, "b")
    assert log.ack_of("feedback_sla:fb-2") is None
