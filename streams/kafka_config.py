"""The one place where :class:`~cxstream.settings.KafkaSettings` becomes client configuration.

Three clients talk to Kafka: confluent-kafka (producer SDK, admin, benchmarks), aiokafka (direct
async consumers) and Faust (which drives aiokafka). Each spells the same security settings
differently; mapping them here keeps TLS/SASL behaviour identical everywhere.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from cxstream.errors import ConfigurationError
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
