"""The one place that turns ``settings.redis`` into redis-py connection options.

Every Redis client of the platform (profile mirror, recommender, API, simulator's closed loop,
demo) gets URL, ACL user, password and TLS from here, so a TLS/ACL deployment is one setting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cxstream.settings import Settings

if TYPE_CHECKING:
    import redis
    import redis.asyncio


def redis_options(settings: Settings, *, timeout: float | None = None) -> dict[str, Any]:
    """Keyword arguments for ``Redis.from_url(settings.redis.url, **options)``."""
    config = settings.redis
    options: dict[str, Any] = {}
    if timeout is not None:
        options["socket_timeout"] = timeout
        options["socket_connect_timeout"] = timeout
    if config.username:
        options["username"] = config.username
    if config.password is not None:
        options["password"] = config.password.get_secret_value()
    if config.ssl_cafile is not None:
        # a rediss:// URL turns TLS on; the CA verifies the server
        options["ssl_ca_certs"] = str(config.ssl_cafile)
    return options


def sync_redis(settings: Settings, *, timeout: float | None = 5.0) -> redis.Redis:
    import redis as redis_sync

    return redis_sync.Redis.from_url(settings.redis.url, **redis_options(settings, timeout=timeout))


def async_redis(settings: Settings, *, timeout: float | None = 5.0) -> redis.asyncio.Redis:
    import redis.asyncio as redis_async

    return redis_async.Redis.from_url(
        settings.redis.url, **redis_options(settings, timeout=timeout)
    )
