"""Wall-clock pacing of a publish run: an events-per-second cap and a simulated-time speedup."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
Sleep = Callable[[float], None]

#: debts smaller than this are carried instead of slept (sleep() cannot do microseconds)
_MIN_SLEEP_S = 0.002


class TokenBucket:
    """At most ``rate`` events per second, bursts up to ``burst`` events after idle time.

    The bucket starts empty, so the cap also holds over the first second of a run. ``take()``
    sleeps only once the debt reaches a couple of milliseconds, so the cap holds at high rates
    without one sleep per event.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"token bucket rate must be > 0, got {rate}")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate * 0.05)
        self._clock = clock
        self._sleep = sleep
        self._tokens = 0.0
        self._last = clock()

    def take(self, n: int = 1) -> None:
        self._tokens -= n
        if self._tokens >= 0:
            return
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < -self.rate * _MIN_SLEEP_S:
            # the refill on the next call counts the time slept, which repays this debt
            self._sleep(-self._tokens / self.rate)


class SimulatedClock:
    """Holds publishing back so that simulated time runs ``speedup`` times as fast as wall time.

    Simulated time is the largest ``occurred_at`` seen so far (late events carry older times and
    so never hold anything back).
    """

    def __init__(
        self, speedup: float, *, clock: Clock = time.monotonic, sleep: Sleep = time.sleep
    ) -> None:
        if speedup <= 0:
            raise ValueError(f"speedup must be > 0, got {speedup}")
        self.speedup = speedup
        self._clock = clock
        self._sleep = sleep
        self._origin_sim: int | None = None
        self._origin_wall = 0.0
        self._sim = 0

    def wait(self, occurred_at_ms: int) -> None:
        if self._origin_sim is None:
            self._origin_sim = self._sim = occurred_at_ms
            self._origin_wall = self._clock()
            return
        if occurred_at_ms <= self._sim:
            return
        self._sim = occurred_at_ms
        due = self._origin_wall + (occurred_at_ms - self._origin_sim) / 1000.0 / self.speedup
        ahead = due - self._clock()
        if ahead > _MIN_SLEEP_S:
            self._sleep(ahead)
