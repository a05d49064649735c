"""TLS and credentials settings reach the Redis and ClickHouse clients (built, not connected)."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from cxstream.settings import Settings
from sinks.clickhouse.backend import ServerBackend


def secure_settings(tmp_path: Path) -> Settings:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")  # only the path is checked here
    base = Settings()
    return base.model_copy(
        update={
            "clickhouse": base.clickhouse.model_copy(
                update={
                    "host": "ch.bank.internal",
                    "port": 9440,
                    "secure": True,
                    "ca_certs": ca,
                    "user": "cx_sink",
                    "password": SecretStr("ch-secret"),
                }
            ),
            "redis": base.redis.model_copy(
                update={
                    "url": "rediss://redis.bank.internal:6380/0",
                    "username": "cx_app",
                    "password": SecretStr("redis-secret"),
                    "ssl_cafile": ca,
                }
            ),
        }
    )


def test_clickhouse_client_uses_the_secure_port_ca_and_user(tmp_path: Path) -> None:
    settings = secure_settings(tmp_path)
    client = ServerBackend(settings)._connect("default")
    connection = client.connection
    assert list(connection.hosts) == [("ch.bank.internal", 9440)]
    assert connection.secure_socket is True
    assert connection.verify_cert is True
    assert connection.ssl_options["ca_certs"] == str(settings.clickhouse.ca_certs)
    assert (connection.user, connection.password) == ("cx_sink", "ch-secret")


def test_redis_client_uses_tls_ca_and_acl_user(tmp_path: Path) -> None:
    from redis.asyncio.connection import SSLConnection

    from processors.profiles.mirror import redis_for

    settings = secure_settings(tmp_path)
    pool = redis_for(settings).connection_pool
    assert issubclass(pool.connection_class, SSLConnection)
    kwargs = pool.connection_kwargs
    assert kwargs["username"] == "cx_app"
    assert kwargs["password"] == "redis-secret"
    assert kwargs["ssl_ca_certs"] == str(settings.redis.ssl_cafile)
    assert (kwargs["host"], kwargs["port"]) == ("redis.bank.internal", 6380)
