"""Erasure building blocks without services: the block list and the Redis key patterns."""

from __future__ import annotations

import fnmatch
import json

from pydantic import SecretStr

from cxstream.erasure import BlockList, ErasureMark, customer_pseudonym, redis_patterns
from cxstream.privacy import pseudonymise
from cxstream.settings import Settings

SETTINGS = Settings().model_copy(
    update={
        "privacy": Settings().privacy.model_copy(update={"pseudonym_key": SecretStr("unit-key")})
    }
)
T_ERASED = 1_767_225_600_000


def mark(customer_id: str, at: int = T_ERASED, request_id: str = "req-1") -> ErasureMark:
    return ErasureMark(customer_pseudonym(customer_id, SETTINGS), at, request_id)


def test_pseudonym_is_the_keyed_pseudonym_of_the_id() -> None:
    assert customer_pseudonym("cust-1", SETTINGS) == pseudonymise("cust-1", SETTINGS)
    assert customer_pseudonym("cust-1", SETTINGS) != customer_pseudonym("cust-1", Settings())


def test_events_at_or_before_the_erasure_are_dropped_later_ones_pass() -> None:
    blocked = BlockList(SETTINGS, [mark("cust-1")])
    assert blocked.blocks("cust-1", T_ERASED - 1)
    assert blocked.blocks("cust-1", T_ERASED)  # the erasure request itself (id in clear)
    assert not blocked.blocks("cust-1", T_ERASED + 1)
    assert not blocked.blocks("cust-10", T_ERASED - 1)
    assert not blocked.blocks(None, T_ERASED - 1)
    assert not blocked.blocks("", T_ERASED - 1)


def test_drops_checks_every_customer_column_of_any_event_type() -> None:
    blocked = BlockList(SETTINGS, [mark("cust-1")])
    before = T_ERASED - 1000
    assert blocked.drops({"customer_id": "cust-1", "occurred_at": before})
    assert blocked.drops({"principal_id": "cust-1", "principal_type": "customer",
                          "occurred_at": before})  # fmt: skip
    assert blocked.drops({"principal_id": "staff-7", "target_customer_id": "cust-1",
                          "occurred_at": before})  # fmt: skip
    pseudonym = customer_pseudonym("cust-1", SETTINGS)
    assert blocked.drops({"customer_pseudonym": pseudonym, "occurred_at": before})
    assert not blocked.drops({"customer_id": "cust-2", "occurred_at": before})
    assert not blocked.drops({"customer_id": None, "anonymous_id": "a1", "occurred_at": before})
    assert not blocked.drops({"customer_id": "cust-1", "occurred_at": T_ERASED + 1})
    assert not BlockList(SETTINGS).drops({"customer_id": "cust-1", "occurred_at": before})


def test_the_latest_erasure_wins_and_replays_change_nothing() -> None:
    blocked = BlockList(SETTINGS)
    assert blocked.add(mark("cust-1", T_ERASED))
    assert not blocked.add(mark("cust-1", T_ERASED))  # replayed request
    assert blocked.add(mark("cust-1", T_ERASED + 5000, "req-2"))  # erased again later
    assert not blocked.add(mark("cust-1", T_ERASED, "req-1"))  # an old replay does not roll back
    assert len(blocked) == 1
    assert blocked.blocks("cust-1", T_ERASED + 4000)
    found = blocked.mark_of("cust-1")
    assert found is not None
    assert found.request_id == "req-2"


def test_marks_are_json_values_for_faust_tables_and_come_from_requests() -> None:
    request = {
        "event_id": "e-1",
        "occurred_at": T_ERASED,
        "customer_id": "cust-1",
        "request_id": "req-9",
        "channel": "app",
        "reason": "moving abroad",
        "source": "mobile-app",
    }
    from_request = ErasureMark.from_request(request, SETTINGS)
    assert from_request == ErasureMark.from_request(dict(request), SETTINGS)  # deterministic
    assert from_request == mark("cust-1", T_ERASED, "req-9")
    text = json.dumps(from_request.to_json())
    assert "cust-1" not in text  # the block list never holds the id in clear
    assert ErasureMark.from_json(json.loads(text)) == from_request


def test_redis_patterns_match_whole_segments_only() -> None:
    spec = redis_patterns(SETTINGS, "cust-1", prefix="px")
    assert spec["keys"] == ["px:profile:cust-1", "px:reco:cust-1"]
    pseudonym = customer_pseudonym("cust-1", SETTINGS)

    def matched(key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, p) for p in spec["patterns"])

    assert matched("px:profile:cust-1")
    assert matched("px:sla:cust-1:fb-77")
    assert matched(f"px:flags:{pseudonym}")
    assert not matched("px:profile:cust-10")
    assert not matched("px:profile:xcust-1")
    assert not matched("other:profile:cust-1")
    assert not matched("px:erased")


def test_redis_patterns_escape_glob_characters_in_ids() -> None:
    spec = redis_patterns(SETTINGS, "c*[1]?", prefix="px")
    assert spec["patterns"][0] == "px:*:c\\*\\[1\\]\\?"
    assert spec["keys"][0] == "px:profile:c*[1]?"  # exact keys are not patterns
    assert redis_patterns(SETTINGS, "c1")["keys"][0] == f"{SETTINGS.kafka.topic_prefix}:profile:c1"
