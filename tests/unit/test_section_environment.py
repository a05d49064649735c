"""A child process started with ``section_environment`` reads the parent's section back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from cxstream.settings import RedisSettings, Settings, section_environment


def test_redis_section_survives_the_trip_through_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    redis = RedisSettings(
        url="rediss://redis.bank.internal:6380/2",
        username="cx_app",
        password=SecretStr("s3cret"),
        ssl_cafile=tmp_path / "ca.pem",
        ssl_certfile=tmp_path / "client.pem",
        connect_timeout_seconds=2.5,
        socket_timeout_seconds=None,
    )
    parent = Settings().model_copy(update={"redis": redis})
    env = section_environment(parent, "redis")
    assert env["CX_REDIS__PASSWORD"] == "s3cret"  # the real value, not pydantic's mask
    assert env["CX_REDIS__SSL_KEYFILE"] == "null"
    for key in [k for k in os.environ if k.startswith("CX_REDIS__")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    child = Settings()
    assert child.redis.model_dump() == redis.model_dump()
    assert child.redis.socket_timeout_seconds is None  # not the default 5 s
    assert child.redis.password is not None
    assert child.redis.password.get_secret_value() == "s3cret"
