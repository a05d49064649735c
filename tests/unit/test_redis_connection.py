"""cxstream.redis_connection without a Redis server: options from settings, refused settings,
the connection class per URL scheme, and the errors for a refused port and a silent server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from cxstream.errors import ConfigurationError, ServiceError
from cxstream.redis_connection import (
    RedisConnectTimeout,
    RedisUnavailable,
    async_redis,
    check_redis,
    check_redis_async,
    redis_options,
    sync_redis,
)
from cxstream.settings import RedisSettings, Settings


def settings_with(**fields: Any) -> Settings:
    return Settings().model_copy(update={"redis": RedisSettings(**fields)})


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("not parsed before a connection is made\n")
    return path


def test_options_carry_acl_user_tls_files_and_timeouts(ca_file: Path) -> None:
    settings = settings_with(
        url="rediss://url-user:url-pw@cache.example:6380/3",
        username="cx-app",
        password=SecretStr("s3cret"),
        ssl_cafile=ca_file,
        ssl_certfile=ca_file,
        connect_timeout_seconds=1.5,
        socket_timeout_seconds=2.5,
    )
    options = redis_options(settings)
    # the settings' credentials win over the URL's; host, port and db come from the URL
    assert (options["username"], options["password"]) == ("cx-app", "s3cret")
    assert (options["host"], options["port"], options["db"]) == ("cache.example", 6380, 3)
    assert options["ssl_ca_certs"] == str(ca_file)
    assert options["ssl_certfile"] == str(ca_file)
    assert "ssl_keyfile" not in options
    assert (options["socket_connect_timeout"], options["socket_timeout"]) == (1.5, 2.5)
    explicit = redis_options(settings, timeout=None, connect_timeout=0.2)
    assert (explicit["socket_connect_timeout"], explicit["socket_timeout"]) == (0.2, None)


def test_url_credentials_are_used_when_settings_have_none() -> None:
    options = redis_options(settings_with(url="redis://u:p@127.0.0.1:1/0"))
    assert (options["username"], options["password"]) == ("u", "p")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"url": "redis://127.0.0.1:1/0", "ssl_cafile": "CA"}, "not rediss://"),
        ({"url": "rediss://127.0.0.1:1/0", "ssl_cafile": "MISSING"}, "redis.ssl_cafile: no such"),
        ({"url": "rediss://127.0.0.1:1/0", "ssl_keyfile": "CA"}, "without redis.ssl_certfile"),
        ({"url": "http://127.0.0.1:1/0"}, "scheme 'http'"),
    ],
)
def test_unusable_settings_are_refused_before_connecting(
    ca_file: Path, fields: dict[str, Any], named: str
) -> None:
    paths = {"CA": ca_file, "MISSING": ca_file.with_name("absent.pem")}
    resolved = {k: paths.get(v, v) if isinstance(v, str) else v for k, v in fields.items()}
    settings = settings_with(**resolved)
    for build in (redis_options, sync_redis, async_redis):
        with pytest.raises(ConfigurationError, match=named):
            build(settings)


def test_connection_class_follows_the_url_scheme(ca_file: Path) -> None:
    tls = settings_with(url="rediss://127.0.0.1:1/0", ssl_cafile=ca_file)
    plain = settings_with(url="redis://127.0.0.1:1/0")
    unix = settings_with(url="unix:///tmp/cx-absent.sock?db=2")
    assert issubclass(sync_redis(tls).connection_pool.connection_class, redis.SSLConnection)
    assert issubclass(
        async_redis(tls).connection_pool.connection_class, redis.asyncio.SSLConnection
    )
    for settings in (plain, unix):
        for client in (sync_redis(settings), async_redis(settings)):
            assert not issubclass(
                client.connection_pool.connection_class,
                (redis.SSLConnection, redis.asyncio.SSLConnection),
            )
    pool = sync_redis(unix, max_connections=3).connection_pool
    assert issubclass(pool.connection_class, redis.UnixDomainSocketConnection)
    assert pool.connection_kwargs["path"] == "/tmp/cx-absent.sock"
    assert pool.max_connections == 3


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_refused_port_names_host_user_and_cause() -> None:
    port = _unused_port()
    settings = settings_with(url=f"redis://127.0.0.1:{port}/0", username="cx-app")
    for check in (check_redis, lambda s: asyncio.run(check_redis_async(s))):
        with pytest.raises(RedisUnavailable) as error:
            check(settings)
        assert error.value.reason == "refused"
        assert f"127.0.0.1:{port}" in str(error.value)
        assert "user 'cx-app'" in str(error.value)
        # both hierarchies: cxstream's and redis-py's (callers' outage handling)
        assert isinstance(error.value, ServiceError)
        assert isinstance(error.value, redis.ConnectionError)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def test_a_server_that_never_answers_is_a_timeout(silent_port: int) -> None:
    settings = settings_with(url=f"rediss://127.0.0.1:{silent_port}/0")
    with pytest.raises(RedisConnectTimeout) as error:
        check_redis(settings, timeout=0.3)
    assert error.value.reason == "timeout"
    assert "TLS handshake" in str(error.value)  # the hint for a TLS client on a plain port
    assert isinstance(error.value, redis.TimeoutError)
