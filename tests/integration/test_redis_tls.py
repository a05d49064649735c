"""Redis over TLS with an ACL user, proven against a real redis-server (TLS port only, the
``default`` user disabled, certificates made here): clients built from settings
(cxstream.redis_connection) write and read through the API lookup path and the simulator's
closed loop; every misconfiguration fails with an error naming server, user and cause.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from cxstream.api.lookups import Lookups, profile_key, reco_key, redis_client
from cxstream.api.metrics import ApiMetrics
from cxstream.errors import ServiceError
from cxstream.redis_connection import (
    RedisAccessDenied,
    RedisConnectionFailure,
    RedisUnavailable,
    check_redis,
    check_redis_async,
    sync_redis,
)
from cxstream.settings import RedisSettings, Settings
from cxstream.simulate.loop import redis_lookup
from processors.profiles.mirror import encode_fields
from processors.profiles.view import profile_view
from tests.support.services import LocalStack
from tests.support.tls_servers import (
    Certificates,
    RedisTLSServer,
    make_certificates,
    redis_tls_server,
)

pytestmark = pytest.mark.integration
USER = "cx-app"
PASSWORD = "acl-pw-" + uuid.uuid4().hex[:8]
PREFIX = f"tls{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("redis-tls-certs"))


@pytest.fixture(scope="module")
def server(
    certificates: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisTLSServer]:
    # the ACL user may touch only this run's keys
    directory = tmp_path_factory.mktemp("redis-tls")
    with redis_tls_server(
        directory, certificates, {USER: PASSWORD}, key_pattern=f"{PREFIX}:*"
    ) as running:
        yield running


def settings_for(base: Settings, server: RedisTLSServer, **redis_fields: Any) -> Settings:
    fields: dict[str, Any] = {
        "url": server.url,
        "username": USER,
        "password": SecretStr(PASSWORD),
        "ssl_cafile": server.certificates.ca_file,
        "connect_timeout_seconds": 3.0,
    }
    fields.update(redis_fields)
    return base.model_copy(
        update={
            "redis": RedisSettings(**fields),
            "kafka": base.kafka.model_copy(update={"topic_prefix": PREFIX}),
            "api": base.api.model_copy(update={"worker_url": None}),
        }
    )


def test_clients_from_settings_write_and_read_over_tls_as_the_acl_user(
    local_stack: LocalStack, server: RedisTLSServer
) -> None:
    settings = settings_for(local_stack.settings, server)
    check_redis(settings)
    asyncio.run(check_redis_async(settings))
    customer = f"cust-{uuid.uuid4().hex[:6]}"
    stored = {"c": {"app": [3, 1_796_000_000_000]}, "ir": [4, 1], "ls": 1_796_000_000_000}
    served = {
        "recommendation_id": "r-1",
        "items": [{"product_id": "p-savings", "score": 0.9, "reason": "model"}],
        "policy": "river_bandit",
        "model_version": "v1",
        "served_at": 1_796_000_000_000,
    }
    writer = sync_redis(settings)  # the mirror's layout, written over TLS
    try:
        view = profile_view(customer, stored)  # type: ignore[arg-type]
        writer.hset(profile_key(settings, customer), mapping=encode_fields(view, 7, 1))  # type: ignore[arg-type]
        writer.set(reco_key(settings, customer), json.dumps(served))
        # the ACL is in force: keys outside the user's pattern are refused
        with pytest.raises(redis.exceptions.NoPermissionError):
            writer.set(f"not-{PREFIX}:x", "1")
    finally:
        writer.close()

    async def api_reads() -> tuple[bytes | None, str, dict[str, Any] | None]:
        client = redis_client(settings)
        try:
            lookups = Lookups(settings, client, None, ApiMetrics())
            body, source = await lookups.profile(customer)
            return body, source, await lookups.recommendations(customer, 5)
        finally:
            await client.aclose()

    body, source, recos = asyncio.run(api_reads())
    assert source == "redis"
    assert body is not None
    profile = json.loads(body)
    assert profile["customer_id"] == customer
    assert profile["version"] == 7
    assert recos is not None
    assert [item["product_id"] for item in recos["items"]] == ["p-savings"]
    # the simulator's closed loop reads the served list with its own (sync) client
    assert redis_lookup(settings)(customer) == served


CASES = [
    ("wrong password", {"password": SecretStr("not-the-password")}, "auth", "wrong password"),
    ("unknown user", {"username": "nobody"}, "auth", "wrong password, or the ACL user"),
    (
        "no credentials",
        {"username": None, "password": None},
        "auth",
        "requires authentication",
    ),
    ("CA not given", {"ssl_cafile": None}, "tls", "certificate is not trusted"),
    (
        "untrusted CA",
        {"ssl_cafile": "untrusted"},
        "tls",
        "not signed by the CA in redis.ssl_cafile",
    ),
    ("plain redis:// to the TLS port", {"url": "plain", "ssl_cafile": None}, "reset", "rediss://"),
]


@pytest.mark.parametrize(("case", "overrides", "reason", "named"), CASES)
def test_misconfigured_clients_fail_naming_server_user_and_cause(
    local_stack: LocalStack,
    server: RedisTLSServer,
    case: str,
    overrides: dict[str, Any],
    reason: str,
    named: str,
) -> None:
    if overrides.get("ssl_cafile") == "untrusted":
        overrides = {**overrides, "ssl_cafile": server.certificates.untrusted_ca_file}
    if overrides.get("url") == "plain":
        overrides = {**overrides, "url": server.url.replace("rediss://", "redis://")}
    settings = settings_for(local_stack.settings, server, **overrides)
    user = settings.redis.username or "default"
    expected = RedisAccessDenied if reason in ("tls", "auth") else RedisUnavailable

    async def api_profile() -> None:
        client = redis_client(settings)
        try:
            await Lookups(settings, client, None, ApiMetrics()).profile("cust-x")
        finally:
            await client.aclose()

    with pytest.raises(expected, match=named) as sync_error:
        check_redis(settings)
    with pytest.raises(expected, match=named) as async_error:
        asyncio.run(check_redis_async(settings))
    with pytest.raises(RedisConnectionFailure, match=named) as client_error:
        sync_redis(settings).set(f"{PREFIX}:k", "v")  # an ordinary command, redis-py's retries
    # the API wraps the cause into its own lookup error, message included
    with pytest.raises(ServiceError, match=named) as api_error:
        asyncio.run(api_profile())
    for error in (sync_error.value, async_error.value, client_error.value, api_error.value):
        text = str(error)
        assert f"127.0.0.1:{server.tls_port}" in text, case
        assert f"user {user!r}" in text, case
        assert PASSWORD not in text, case
    assert {sync_error.value.reason, async_error.value.reason, client_error.value.reason} == {
        reason
    }
    # callers' outage handling (`except RedisError`) still catches it
    assert isinstance(client_error.value, redis.RedisError)


def test_client_certificate_when_the_server_requires_one(
    local_stack: LocalStack, certificates: Certificates, tmp_path: Path
) -> None:
    with redis_tls_server(
        tmp_path, certificates, {USER: PASSWORD}, require_client_cert=True
    ) as mutual:
        with_cert = settings_for(
            local_stack.settings,
            mutual,
            ssl_certfile=certificates.client_cert,
            ssl_keyfile=certificates.client_key,
        )
        check_redis(with_cert)
        asyncio.run(check_redis_async(with_cert))
        without = settings_for(local_stack.settings, mutual)
        with pytest.raises(RedisAccessDenied, match="TLS") as error:
            check_redis(without)
        assert error.value.reason == "tls"
