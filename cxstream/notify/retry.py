"""Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And Jitter").

The wait before attempt ``n + 1`` is uniform in ``[0, min(cap, initial * 2**(n - 1))]``: full
jitter spreads retries of many alerts that failed together (a receiver outage) instead of
hitting the receiver again in lock-step.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cxstream.notify.errors import DeliveryError
from cxstream.settings import NotifySettings


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    initial_seconds: float = 0.5
    max_seconds: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    @classmethod
    def from_settings(cls, config: NotifySettings) -> RetryPolicy:
        return cls(
            config.retry_max_attempts, config.retry_initial_seconds, config.retry_max_seconds
        )

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the wait after failed attempt ``attempt`` (1-based)."""
        return min(self.max_seconds, self.initial_seconds * 2 ** (attempt - 1))

    def delay(self, attempt: int) -> float:
        return self.rng.uniform(0.0, self.ceiling(attempt))


#: called after each attempt with (attempt number, error or None when it succeeded)
AttemptHook = Callable[[int, DeliveryError | None], None]


async def with_retry(
    policy: RetryPolicy,
    attempt_once: Callable[[], Awaitable[None]],
    on_attempt: AttemptHook | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> DeliveryError | None:
    """Run ``attempt_once`` until it succeeds, fails for good, or attempts run out.

    Returns ``None`` on success, else the last error (the caller dead-letters).
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            await attempt_once()
        except DeliveryError as exc:
            if on_attempt is not None:
                on_attempt(attempt, exc)
            if not exc.retryable or attempt >= policy.max_attempts:
                return exc
            await sleep(policy.delay(attempt))
            continue
        if on_attempt is not None:
            on_attempt(attempt, None)
        return None
