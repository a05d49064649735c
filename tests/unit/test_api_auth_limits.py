"""API keys per frontend, key headers, the per-key token bucket (clock given explicitly)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from cxstream.api.auth import ApiKeys, presented_key
from cxstream.api.limits import RateLimiter, retry_after_header
from cxstream.errors import ConfigurationError
from cxstream.settings import Settings


def test_a_key_names_its_frontend_and_anything_else_names_none() -> None:
    keys = ApiKeys({"web": SecretStr("k-web"), "ivr": SecretStr("k-ivr")})
    assert keys.frontend("k-web") == "web"
    assert keys.frontend("k-ivr") == "ivr"
    assert keys.frontend("k-web ") is None
    assert keys.frontend("K-WEB") is None
    assert keys.frontend("") is None
    assert keys.frontend(None) is None


def test_the_dev_default_is_one_documented_key() -> None:
    keys = Settings().api.keys
    assert list(keys) == ["dev"]
    assert ApiKeys(keys).frontend("cxstream-dev-api-key") == "dev"


def test_no_keys_or_an_empty_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="empty"):
        ApiKeys({})
    with pytest.raises(ConfigurationError, match="'web'"):
        ApiKeys({"web": SecretStr("")})


def test_key_from_x_api_key_or_bearer() -> None:
    assert presented_key({"X-API-Key": " abc "}) == "abc"
    assert presented_key({"Authorization": "Bearer abc"}) == "abc"
    assert presented_key({"Authorization": "bearer abc"}) == "abc"
    assert presented_key({"Authorization": "Basic abc"}) is None
    assert presented_key({"Authorization": "Bearer "}) is None
    assert presented_key({}) is None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_the_burst_then_refills_at_the_rate_per_key() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.acquire("web") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("web") == pytest.approx(0.5)  # one token takes 1/rate s
    assert limiter.acquire("app") == 0.0  # another key has its own bucket
    clock.now += 0.5
    assert limiter.acquire("web") == 0.0
    assert limiter.acquire("web") > 0
    clock.now += 100  # refill stops at the burst
    assert [limiter.acquire("web") for _ in range(4)][-1] > 0


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(1.0) == "1"
    assert retry_after_header(1.2) == "2"
