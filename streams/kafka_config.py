"""The one place where :class:`~cxstream.settings.KafkaSettings` becomes client configuration.

Three clients talk to Kafka: confluent-kafka (producer SDK, admin, benchmarks), aiokafka (direct
async consumers) and Faust (which drives aiokafka). Each spells the same security settings
differently; mapping them here keeps TLS/SASL behaviour identical everywhere.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Mapping
from typing import Any

from cxstream.errors import ConfigurationError, ServiceError
from cxstream.settings import KafkaSettings, Settings

_SASL = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
_TLS = frozenset({"SSL", "SASL_SSL"})


def check_security(kafka: KafkaSettings) -> None:
    """Reject combinations that a client would only fail on at connect time, far from the cause."""
    protocol = kafka.security_protocol
    if protocol in _SASL:
        missing = [
            name
            for name, value in (
                ("sasl_mechanism", kafka.sasl_mechanism),
                ("sasl_username", kafka.sasl_username),
                ("sasl_password", kafka.sasl_password),
            )
            if value is None
        ]
        if missing:
            raise ConfigurationError(
                f"kafka.security_protocol={protocol} needs kafka.{', kafka.'.join(missing)}"
            )
    elif kafka.sasl_mechanism or kafka.sasl_username or kafka.sasl_password:
        raise ConfigurationError(
            f"kafka.sasl_* is set but kafka.security_protocol={protocol} does not use SASL"
        )
    tls_files = (kafka.ssl_cafile, kafka.ssl_certfile, kafka.ssl_keyfile)
    if protocol not in _TLS and any(tls_files):
        raise ConfigurationError(
            f"kafka.ssl_* files are set but kafka.security_protocol={protocol} does not use TLS"
        )
    if (kafka.ssl_certfile is None) != (kafka.ssl_keyfile is None):
        raise ConfigurationError("kafka.ssl_certfile and kafka.ssl_keyfile go together")
    for name, path in zip(("ssl_cafile", "ssl_certfile", "ssl_keyfile"), tls_files, strict=True):
        if path is not None and not path.is_file():
            raise ConfigurationError(f"kafka.{name}={path} is not a readable file")


def confluent_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """librdkafka properties (connection and security) for confluent-kafka clients.

    ``overrides`` are further librdkafka properties by their own names, taken as given:
    ``confluent_config(settings, **{"group.id": "g", "error_cb": on_error})``.
    """
    kafka = settings.kafka
    check_security(kafka)
    conf: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "security.protocol": kafka.security_protocol,
    }
    if kafka.security_protocol in _SASL:
        assert kafka.sasl_password is not None  # check_security guarantees it
        conf["sasl.mechanism"] = kafka.sasl_mechanism
        conf["sasl.username"] = kafka.sasl_username
        conf["sasl.password"] = kafka.sasl_password.get_secret_value()
    if kafka.ssl_cafile is not None:
        conf["ssl.ca.location"] = str(kafka.ssl_cafile)
    if kafka.ssl_certfile is not None:
        conf["ssl.certificate.location"] = str(kafka.ssl_certfile)
    if kafka.ssl_keyfile is not None:
        conf["ssl.key.location"] = str(kafka.ssl_keyfile)
    conf.update(overrides)
    return conf


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS context for the Python clients, ``None`` when the protocol does not use TLS."""
    kafka = settings.kafka
    check_security(kafka)
    if kafka.security_protocol not in _TLS:
        return None
    from aiokafka.helpers import create_ssl_context

    try:
        return create_ssl_context(
            cafile=kafka.ssl_cafile, certfile=kafka.ssl_certfile, keyfile=kafka.ssl_keyfile
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"kafka TLS files (ca={kafka.ssl_cafile}, cert={kafka.ssl_certfile}, "
            f"key={kafka.ssl_keyfile}) cannot be loaded: {exc}"
        ) from exc


def aiokafka_config(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``aiokafka.AIOKafkaConsumer`` / ``AIOKafkaProducer``."""
    kafka = settings.kafka
    conf: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers.split(","),
        "security_protocol": kafka.security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        conf["ssl_context"] = context
    if kafka.security_protocol in _SASL:
        assert kafka.sasl_password is not None
        conf["sasl_mechanism"] = kafka.sasl_mechanism
        conf["sasl_plain_username"] = kafka.sasl_username
        conf["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    return conf


def faust_broker_settings(settings: Settings) -> Mapping[str, Any]:
    """``broker`` and ``broker_credentials`` keyword arguments for ``faust.App``.

    Faust derives the security protocol from the credentials object: ``SASLCredentials`` with a
    TLS context is SASL_SSL, without one SASL_PLAINTEXT; a bare ``SSLContext`` is SSL.
    """
    kafka = settings.kafka
    hosts = [host.strip() for host in kafka.bootstrap_servers.split(",") if host.strip()]
    if not hosts:
        raise ConfigurationError("kafka.bootstrap_servers is empty")
    broker = ";".join(f"kafka://{host}" for host in hosts)
    context = ssl_context(settings)
    credentials: Any = None
    if kafka.security_protocol in _SASL:
        import faust

        assert kafka.sasl_password is not None
        credentials = faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value(),
            mechanism=kafka.sasl_mechanism,
            ssl_context=context,
        )
    elif context is not None:
        credentials = context
    return {"broker": broker, "broker_credentials": credentials}


# -- connection checks: one clear error instead of endless client retries --------------------

#: librdkafka error codes (confluent_kafka.KafkaError) that name the cause
_RD_AUTHENTICATION = -169
_RD_SSL = -181


def connection_error(settings: Settings, cause: str, detail: str) -> ServiceError:
    """A :class:`ServiceError` that names the TLS/SASL setting to look at.

    ``cause`` is ``"sasl"`` (authentication refused), ``"tls_verify"`` (broker certificate not
    trusted), ``"tls"`` (other handshake failure), ``"closed"`` (the broker hung up on the first
    request: it wants another protocol) or anything else (unreachable).
    """
    kafka = settings.kafka
    where = (
        f"Kafka at {kafka.bootstrap_servers} (kafka.security_protocol={kafka.security_protocol})"
    )
    if cause == "sasl":
        message = (
            f"{where}: SASL authentication as {kafka.sasl_username!r} with "
            f"{kafka.sasl_mechanism} failed; check kafka.sasl_username / kafka.sasl_password "
            f"(and that the user has a {kafka.sasl_mechanism} credential): {detail}"
        )
    elif cause == "tls_verify":
        message = (
            f"{where}: TLS: the broker's certificate is not trusted; set kafka.ssl_cafile to "
            f"the CA that signed it (now {kafka.ssl_cafile}): {detail}"
        )
    elif cause == "tls":
        message = f"{where}: TLS handshake failed: {detail}"
    elif cause == "closed":
        needs = "SASL" if kafka.security_protocol in _TLS else "TLS/SASL"
        message = (
            f"{where}: the broker closed the connection on the first request: the listener "
            f"probably requires {needs} (for example kafka.security_protocol=SASL_SSL with "
            f"kafka.sasl_* and kafka.ssl_cafile): {detail}"
        )
    else:
        message = f"{where}: unreachable: {detail}"
    return ServiceError(message)


class _Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def check_connection(settings: Settings, *, timeout: float = 10.0) -> None:
    """Fetch metadata once with confluent-kafka; raise :class:`ServiceError` naming the cause.

    librdkafka clients retry failed connections forever and report the cause only through
    callbacks, so a wrong password looks like a hang; call this at start-up instead.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    errors: list[KafkaError] = []
    collected = _Collected()
    logger = logging.getLogger(f"cxstream.kafka_check.{id(collected)}")
    logger.propagate = False  # the reasons go into the error, not twice into the logs
    logger.setLevel(logging.DEBUG)  # "connection closed by peer" is an info-level line
    logger.addHandler(collected)
    admin = AdminClient(
        confluent_config(
            settings,
            error_cb=errors.append,
            logger=logger,
            **{"socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000))},
        )
    )
    deadline = time.monotonic() + timeout
    failure = ""
    try:
        # short attempts, so a decisive cause (refused login, untrusted certificate, hang-up)
        # ends the check at once instead of after the whole timeout
        while time.monotonic() < deadline:
            try:
                admin.list_topics(timeout=min(1.0, max(0.1, deadline - time.monotonic())))
                return
            except KafkaException as exc:
                failure = str(exc)
            admin.poll(0.1)  # serve the error and log callbacks that explain the failure
            decisive = {_RD_AUTHENTICATION, _RD_SSL}
            if any(e.code() in decisive for e in errors) or any(
                "closed by peer" in line for line in collected.lines
            ):
                break
    finally:
        logger.removeHandler(collected)
    auth = [e.str() for e in errors if e.code() == _RD_AUTHENTICATION]
    tls = [e.str() for e in errors if e.code() == _RD_SSL]
    closed = [line for line in collected.lines if "closed by peer" in line]
    if auth:
        raise connection_error(settings, "sasl", auth[0])
    if tls:
        verify = "certificate verify failed" in tls[0]
        raise connection_error(settings, "tls_verify" if verify else "tls", tls[0])
    if closed:
        raise connection_error(settings, "closed", closed[0])
    reasons = [e.str() for e in errors] or [failure]
    raise connection_error(settings, "unreachable", reasons[0])


async def check_connection_async(settings: Settings, *, timeout: float = 10.0) -> None:
    """:func:`check_connection` with aiokafka, the driver under Faust, using
    :func:`aiokafka_config` (the mapping :func:`faust_broker_settings` mirrors)."""
    import asyncio

    from aiokafka import errors as ai_errors
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    conf = aiokafka_config(settings)
    host, _, port = conf.pop("bootstrap_servers")[0].strip().rpartition(":")
    conn = None
    try:
        conn = await asyncio.wait_for(
            create_conn(host, int(port), request_timeout_ms=int(timeout * 1000), **conf),
            timeout,
        )
        # a SASL listener accepts a TLS-only client's ApiVersions, then hangs up on the next
        # request: one real request tells them apart
        await asyncio.wait_for(conn.send(MetadataRequest([])), timeout)
    except ai_errors.SaslAuthenticationFailed as exc:
        raise connection_error(settings, "sasl", str(exc)) from exc
    except ssl.SSLCertVerificationError as exc:
        raise connection_error(settings, "tls_verify", str(exc)) from exc
    except ssl.SSLError as exc:
        raise connection_error(settings, "tls", str(exc)) from exc
    except ai_errors.KafkaConnectionError as exc:
        cause = "closed" if "closed" in str(exc) else "unreachable"
        raise connection_error(settings, cause, str(exc)) from exc
    except (TimeoutError, OSError) as exc:
        raise connection_error(settings, "unreachable", f"{type(exc).__name__}: {exc}") from exc
    finally:
        if conn is not None:
            conn.close()
