"""Request limits: body size (refused before it is read in full) and a per-key rate limit."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web


class BodyTooLargeError(Exception):
    """The body is larger than the limit; ``size`` is what was declared or read so far."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"request body is {size}+ bytes, limit {limit}")
        self.size = size
        self.limit = limit


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refused as soon as it is known to exceed ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before reading anything; a chunked
    body is read until it passes the limit.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyTooLargeError(declared, limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token bucket per key: ``rate`` requests per second, bursts up to ``burst``.

    Per process: with several API processes behind a balancer each enforces its own share.
    """

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens for ``key``; 0.0 when allowed, else seconds until it would be."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / self.rate


def retry_after_header(wait_seconds: float) -> str:
    """``Retry-After`` takes whole seconds: round up, at least 1."""
    return str(max(1, math.ceil(wait_seconds)))
