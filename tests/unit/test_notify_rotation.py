"""On-call rotations and routing: turns, hand-over instants, overrides, route order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cxstream.errors import ConfigurationError
from cxstream.notify.errors import RoutingError
from cxstream.notify.notification import Notification
from cxstream.notify.rotation import Rotation
from cxstream.notify.routing import Router
from cxstream.settings import (
    NotifyMemberSettings,
    NotifyOverrideSettings,
    NotifyRotationSettings,
    NotifyRouteSettings,
    NotifySettings,
)

HANDOVER = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # a Monday, 09:00 UTC


def ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def rotation(**kwargs: object) -> NotifyRotationSettings:
    members = [NotifyMemberSettings(name=n) for n in ("ana", "ben", "chen")]
    return NotifyRotationSettings(
        name="cs", members=members, handover_at=HANDOVER, shift_hours=24, **kwargs
    )


def test_turns_hand_over_at_the_configured_instant() -> None:
    r = Rotation(rotation())
    one_ms = timedelta(milliseconds=1)
    assert r.on_call(ms(HANDOVER)).name == "ana"
    assert r.on_call(ms(HANDOVER + timedelta(hours=24) - one_ms)).name == "ana"
    assert r.on_call(ms(HANDOVER + timedelta(hours=24))).name == "ben"
    assert r.on_call(ms(HANDOVER + timedelta(hours=48, minutes=5))).name == "chen"
    assert r.on_call(ms(HANDOVER + timedelta(hours=72))).name == "ana"  # wraps around
    # before the first hand-over the turns run backwards: the day before was chen's
    assert r.on_call(ms(HANDOVER - one_ms)).name == "chen"


def test_override_beats_the_turn_only_inside_its_range() -> None:
    start, end = HANDOVER + timedelta(hours=30), HANDOVER + timedelta(hours=40)
    r = Rotation(rotation(overrides=[NotifyOverrideSettings(member="chen", start=start, end=end)]))
    assert r.on_call(ms(start - timedelta(milliseconds=1))).name == "ben"
    assert r.on_call(ms(start)).name == "chen"
    assert r.on_call(ms(end - timedelta(milliseconds=1))).name == "chen"
    assert r.on_call(ms(end)).name == "ben"


def test_later_override_wins_where_they_overlap() -> None:
    a = NotifyOverrideSettings(member="chen", start=HANDOVER, end=HANDOVER + timedelta(hours=10))
    b = NotifyOverrideSettings(
        member="ben", start=HANDOVER + timedelta(hours=5), end=HANDOVER + timedelta(hours=6)
    )
    r = Rotation(rotation(overrides=[a, b]))
    assert r.on_call(ms(HANDOVER + timedelta(hours=4))).name == "chen"
    assert r.on_call(ms(HANDOVER + timedelta(hours=5, minutes=30))).name == "ben"


def test_override_for_an_unknown_member_is_a_configuration_error() -> None:
    bad = NotifyOverrideSettings(member="zoe", start=HANDOVER, end=HANDOVER + timedelta(hours=1))
    with pytest.raises(ConfigurationError, match="zoe"):
        Rotation(rotation(overrides=[bad]))


def notification(department: str, kind: str, level: str) -> Notification:
    return Notification("a1", kind, level, department, "fb-1", ms(HANDOVER), "late")


def test_first_matching_route_wins() -> None:
    config = NotifySettings(
        rotations=[
            rotation(),
            NotifyRotationSettings(name="sup", members=[NotifyMemberSettings(name="sam")]),
            NotifyRotationSettings(name="risk", members=[NotifyMemberSettings(name="rita")]),
        ],
        routes=[
            NotifyRouteSettings(
                department="customer_service", levels=["escalation_1"], rotation="sup"
            ),
            NotifyRouteSettings(department="customer_service", rotation="cs"),
            NotifyRouteSettings(department="risk_control", kinds=["security"], rotation="risk"),
        ],
    )
    router = Router(config)
    assert router.rotation_for(notification("customer_service", "feedback_sla", "breach")).name == (
        "cs"
    )
    esc = notification("customer_service", "feedback_sla", "escalation_1")
    assert router.rotation_for(esc).name == "sup"
    assert router.rotation_for(notification("risk_control", "security", "critical")).name == "risk"
    with pytest.raises(RoutingError, match="department=it"):
        router.rotation_for(notification("it", "pipeline", "critical"))


def test_route_to_unknown_rotation_fails_at_start() -> None:
    config = NotifySettings(routes=[NotifyRouteSettings(department="it", rotation="ops")])
    with pytest.raises(ConfigurationError, match="ops"):
        Router(config)
