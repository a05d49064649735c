"""Backoff with full jitter and the retry loop's stopping rules."""

from __future__ import annotations

import random

from cxstream.notify.errors import DeliveryError
from cxstream.notify.retry import RetryPolicy, with_retry


def test_full_jitter_stays_under_the_exponential_ceiling() -> None:
    policy = RetryPolicy(
        max_attempts=10, initial_seconds=0.5, max_seconds=4.0, rng=random.Random(7)
    )
    assert [policy.ceiling(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    for attempt in range(1, 8):
        delays = [policy.delay(attempt) for _ in range(500)]
        assert all(0.0 <= d <= policy.ceiling(attempt) for d in delays)
        # full jitter spreads over the whole range, not around the ceiling
        assert (
            min(delays)
            < 0.1 * policy.ceiling(attempt)
            < 0.9 * policy.ceiling(attempt)
            < max(delays)
        )


async def run(policy: RetryPolicy, outcomes: list[DeliveryError | None]):
    slept: list[float] = []
    seen: list[tuple[int, bool]] = []
    calls = iter(outcomes)

    async def attempt_once() -> None:
        error = next(calls)
        if error is not None:
            raise error

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    result = await with_retry(policy, attempt_once, lambda n, e: seen.append((n, e is None)), sleep)
    return result, slept, seen


async def test_retries_until_success() -> None:
    policy = RetryPolicy(max_attempts=5, initial_seconds=1.0, max_seconds=8.0)
    boom = DeliveryError("500", retryable=True, status=500)
    result, slept, seen = await run(policy, [boom, boom, None])
    assert result is None
    assert seen == [(1, False), (2, False), (3, True)]
    assert len(slept) == 2
    assert slept[0] <= 1.0
    assert slept[1] <= 2.0


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    policy = RetryPolicy(max_attempts=3, initial_seconds=0.01, max_seconds=0.01)
    errors = [DeliveryError(f"500 #{i}", retryable=True) for i in range(5)]
    result, slept, seen = await run(policy, list(errors))
    assert result is errors[2]
    assert len(seen) == 3
    assert len(slept) == 2


async def test_non_retryable_error_stops_at_once() -> None:
    policy = RetryPolicy(max_attempts=6)
    gone = DeliveryError("404", retryable=False, status=404)
    result, slept, seen = await run(policy, [gone, None])
    assert result is gone
    assert slept == []
    assert seen == [(1, False)]
