"""The one place Redis clients are built (sync and asyncio) from ``settings.redis``.

Every Redis client of the platform (profile mirror, recommender, erasure, API, sinks' block
list, simulator's closed loop, demo, benchmarks) gets URL, ACL user, password, TLS files and
timeouts from here, so a TLS/ACL deployment is one group of settings:

- ``redis.url``: ``redis://`` (plain TCP), ``rediss://`` (TLS) or ``unix://``;
- ``redis.username`` / ``redis.password``: the ACL user (they win over credentials in the URL);
- ``redis.ssl_cafile`` (the CA that signed the server), ``ssl_certfile`` / ``ssl_keyfile``
  (client certificate, for servers with ``tls-auth-clients``): only with ``rediss://``, so a
  forgotten ``s`` never silently sends the password in clear text.

A connection that fails raises a :class:`RedisConnectionFailure` naming the server, the user and
the cause (TLS handshake, authentication, refused, reset, timeout). These are ``ServiceError`` and
redis-py ``RedisError`` at once, so the outage handling of existing callers (``except
RedisError``) keeps working. Failures that retrying cannot fix (TLS, authentication) are not
redis-py ``ConnectionError`` so redis-py does not retry them; the others are retried as before.
"""

from __future__ import annotations

import enum
import socket
import ssl
from collections.abc import Iterator
from typing import Any, Literal
from urllib.parse import urlsplit

import redis
import redis.asyncio
import redis.asyncio.connection as async_connection
import redis.asyncio.retry
import redis.connection as sync_connection
import redis.retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from cxstream.errors import ConfigurationError, ServiceError
from cxstream.settings import Settings

Reason = Literal["tls", "auth", "refused", "reset", "timeout", "dns", "protocol", "other"]


class _Default(enum.Enum):
    FROM_SETTINGS = "from settings"


#: a timeout argument left to ``settings.redis`` (``None`` itself means "no timeout")
FROM_SETTINGS = _Default.FROM_SETTINGS
Timeout = float | None | Literal[_Default.FROM_SETTINGS]


class RedisConnectionFailure(ServiceError, RedisError):  # noqa: N818 (named like redis-py's)
    """A Redis connection could not be made; ``reason`` is the short cause."""

    def __init__(self, message: str, *, reason: Reason) -> None:
        super().__init__(message)
        self.reason: Reason = reason


class RedisAccessDenied(RedisConnectionFailure):
    """TLS or authentication refused: a setting is wrong, retrying cannot help."""


class RedisUnavailable(RedisConnectionFailure, redis.exceptions.ConnectionError):
    """Refused, reset or unresolvable: the server may come back (redis-py retries these)."""


class RedisConnectTimeout(RedisUnavailable, redis.exceptions.TimeoutError):
    """No answer within the connect timeout."""


# -- options -------------------------------------------------------------------------------------

_SCHEMES = ("redis", "rediss", "unix")


def _resolve(value: Timeout, default: float | None) -> float | None:
    return default if value is FROM_SETTINGS else value


def redis_options(
    settings: Settings,
    *,
    timeout: Timeout = FROM_SETTINGS,
    connect_timeout: Timeout = FROM_SETTINGS,
) -> dict[str, Any]:
    """Connection-pool keyword arguments from ``settings.redis`` (the URL's own options under them).

    ``timeout`` is the per-command socket timeout, ``connect_timeout`` the connect timeout;
    both default to the settings. Raises ``ConfigurationError`` for an unusable combination.
    """
    config = settings.redis
    scheme = urlsplit(config.url).scheme
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"redis.url: scheme {scheme!r} is not one of redis://, rediss://, unix://"
        )
    files = {"ssl_cafile": config.ssl_cafile, "ssl_certfile": config.ssl_certfile,
             "ssl_keyfile": config.ssl_keyfile}  # fmt: skip
    given = [name for name, path in files.items() if path is not None]
    if given and scheme != "rediss":
        raise ConfigurationError(
            f"redis.{', redis.'.join(given)} set but redis.url is {scheme}://, not rediss://: "
            "the connection would not use TLS"
        )
    for name in given:
        path = files[name]
        if path is not None and not path.is_file():
            raise ConfigurationError(f"redis.{name}: no such file {path}")
    if config.ssl_keyfile is not None and config.ssl_certfile is None:
        raise ConfigurationError("redis.ssl_keyfile set without redis.ssl_certfile")

    options: dict[str, Any] = sync_connection.parse_url(config.url)
    options.pop("connection_class", None)
    options["socket_timeout"] = _resolve(timeout, config.socket_timeout_seconds)
    options["socket_connect_timeout"] = _resolve(connect_timeout, config.connect_timeout_seconds)
    if config.username:
        options["username"] = config.username
    if config.password is not None:
        options["password"] = config.password.get_secret_value()
    if config.ssl_cafile is not None:
        options["ssl_ca_certs"] = str(config.ssl_cafile)
    if config.ssl_certfile is not None:
        options["ssl_certfile"] = str(config.ssl_certfile)
    if config.ssl_keyfile is not None:
        options["ssl_keyfile"] = str(config.ssl_keyfile)
    return options


# -- clients -------------------------------------------------------------------------------------


def sync_redis(
    settings: Settings,
    *,
    timeout: Timeout = FROM_SETTINGS,
    connect_timeout: Timeout = FROM_SETTINGS,
    **pool_options: Any,
) -> redis.Redis:
    """A client over its own pool; ``pool_options`` (e.g. ``max_connections``) go to the pool."""
    options = redis_options(settings, timeout=timeout, connect_timeout=connect_timeout)
    options.update(pool_options)
    scheme = urlsplit(settings.redis.url).scheme
    options["connection_class"] = _SYNC_CLASSES[scheme]
    return redis.Redis.from_pool(sync_connection.ConnectionPool(**options))


def async_redis(
    settings: Settings,
    *,
    timeout: Timeout = FROM_SETTINGS,
    connect_timeout: Timeout = FROM_SETTINGS,
    **pool_options: Any,
) -> redis.asyncio.Redis:
    """The asyncio twin of :func:`sync_redis`."""
    options = redis_options(settings, timeout=timeout, connect_timeout=connect_timeout)
    options.update(pool_options)
    scheme = urlsplit(settings.redis.url).scheme
    options["connection_class"] = _ASYNC_CLASSES[scheme]
    return redis.asyncio.Redis.from_pool(async_connection.ConnectionPool(**options))


def check_redis(settings: Settings, *, timeout: float = 5.0) -> None:
    """PING once, without retries; raises :class:`RedisConnectionFailure` naming the cause."""
    client = sync_redis(settings, timeout=timeout, connect_timeout=timeout, retry=_NO_RETRY)
    try:
        client.ping()
    finally:
        client.close()


async def check_redis_async(settings: Settings, *, timeout: float = 5.0) -> None:
    """The asyncio twin of :func:`check_redis`."""
    client = async_redis(settings, timeout=timeout, connect_timeout=timeout, retry=_NO_RETRY_ASYNC)
    try:
        await client.ping()
    finally:
        await client.aclose()


# -- failures ------------------------------------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _classify(exc: BaseException, *, tls: bool, cafile: str | None) -> tuple[Reason, str]:
    chain = list(_chain(exc))
    for err in chain:
        if isinstance(err, ssl.SSLCertVerificationError):
            trust = (
                f"is not signed by the CA in redis.ssl_cafile ({cafile})"
                if cafile
                else "is not trusted; set redis.ssl_cafile to the CA that signed it"
            )
            return (
                "tls",
                f"TLS handshake failed: the server's certificate {trust} ({err.verify_message})",
            )
    for err in chain:
        if isinstance(err, ssl.SSLError):
            return "tls", (
                f"TLS handshake failed ({err.reason or err}): is the port a TLS port, and does "
                "the server want a client certificate (redis.ssl_certfile)?"
            )
    text = " ".join(str(err) for err in chain)
    lowered = text.lower()
    if "wrongpass" in lowered or any(
        isinstance(err, redis.exceptions.AuthenticationError) for err in chain
    ):
        if "username-password" in lowered or "wrongpass" in lowered:
            why = "wrong password, or the ACL user is unknown or disabled"
        elif "without any password configured" in lowered:
            why = "a password was sent but the server's user has none"
        else:
            why = "the server requires authentication: set redis.username and redis.password"
        return "auth", f"authentication failed: {why}"
    for err in chain:
        if isinstance(err, ConnectionRefusedError):
            return "refused", "connection refused: nothing listens there"
        if isinstance(err, socket.gaierror):
            return "dns", f"cannot resolve the host ({err})"
        if isinstance(err, (ConnectionResetError, BrokenPipeError)) or (
            "closed by server" in str(err).lower()
        ):
            hint = "" if tls else ": a TLS port needs a rediss:// URL (and redis.ssl_cafile)"
            return "reset", f"the server closed the connection during the handshake{hint}"
        if isinstance(err, (redis.exceptions.TimeoutError, TimeoutError, socket.timeout)):
            hint = "; a plain Redis port never answers a TLS handshake" if tls else ""
            return "timeout", f"no answer within the connect timeout{hint}"
        if isinstance(err, redis.exceptions.InvalidResponse):
            hint = "" if tls else " (a TLS port with a redis:// URL?)"
            return "protocol", f"the server does not speak the Redis protocol{hint}: {err}"
    return "other", str(exc)


def connection_failure(connection: Any, exc: BaseException) -> RedisConnectionFailure:
    """The cxstream error for ``exc``, raised while ``connection`` connected."""
    tls = isinstance(connection, (sync_connection.SSLConnection, async_connection.SSLConnection))
    cafile = getattr(getattr(connection, "ssl_context", None), "ca_certs", None) or getattr(
        connection, "ca_certs", None
    )
    reason, text = _classify(exc, tls=tls, cafile=cafile)
    path = getattr(connection, "path", None)
    where = (
        path if path else f"{getattr(connection, 'host', '?')}:{getattr(connection, 'port', '?')}"
    )
    user = getattr(connection, "username", None) or "default"
    message = f"Redis {where} (user {user!r}, {'TLS' if tls else 'no TLS'}): {text}"
    if reason in ("tls", "auth"):
        return RedisAccessDenied(message, reason=reason)
    if reason == "timeout":
        return RedisConnectTimeout(message, reason=reason)
    return RedisUnavailable(message, reason=reason)


class _SyncNamed(sync_connection.AbstractConnection):
    """Connect failures become :class:`RedisConnectionFailure` (host, user, cause)."""

    def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        try:
            super().connect_check_health(check_health, retry_socket_connect)
        except RedisConnectionFailure:
            raise
        except (RedisError, OSError) as exc:
            raise connection_failure(self, exc) from exc


class _AsyncNamed(async_connection.AbstractConnection):
    """The asyncio twin of :class:`_SyncNamed`."""

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        try:
            await super().connect_check_health(check_health, retry_socket_connect)
        except RedisConnectionFailure:
            raise
        except (RedisError, OSError) as exc:
            raise connection_failure(self, exc) from exc


class _SyncTCP(_SyncNamed, sync_connection.Connection):
    pass


class _SyncTLS(_SyncNamed, sync_connection.SSLConnection):
    pass


class _SyncUnix(_SyncNamed, sync_connection.UnixDomainSocketConnection):
    pass


class _AsyncTCP(_AsyncNamed, async_connection.Connection):
    pass


class _AsyncTLS(_AsyncNamed, async_connection.SSLConnection):
    pass


class _AsyncUnix(_AsyncNamed, async_connection.UnixDomainSocketConnection):
    pass


_SYNC_CLASSES = {
    "redis": _SyncTCP, "rediss": _SyncTLS, "unix": _SyncUnix,
}  # fmt: skip
_ASYNC_CLASSES = {
    "redis": _AsyncTCP, "rediss": _AsyncTLS, "unix": _AsyncUnix,
}  # fmt: skip
_NO_RETRY = redis.retry.Retry(NoBackoff(), 0)
_NO_RETRY_ASYNC = redis.asyncio.retry.Retry(NoBackoff(), 0)
