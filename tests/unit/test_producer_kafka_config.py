"""Security settings mapped once for confluent-kafka, aiokafka and Faust."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from cxstream.errors import ConfigurationError
from cxstream.settings import Settings
from streams.kafka_config import (
    aiokafka_config,
    confluent_config,
    faust_broker_settings,
    ssl_context,
)


def with_kafka(**kafka: Any) -> Settings:
    base = Settings()
    return base.model_copy(update={"kafka": base.kafka.model_copy(update=kafka)})


def test_plaintext_is_just_the_servers() -> None:
    settings = with_kafka(bootstrap_servers="k1:9092,k2:9092")
    assert confluent_config(settings) == {
        "bootstrap.servers": "k1:9092,k2:9092",
        "security.protocol": "PLAINTEXT",
    }
    assert aiokafka_config(settings)["bootstrap_servers"] == ["k1:9092", "k2:9092"]
    assert faust_broker_settings(settings) == {
        "broker": "kafka://k1:9092;kafka://k2:9092",
        "broker_credentials": None,
    }
    assert ssl_context(settings) is None


def test_overrides_are_librdkafka_names_taken_as_given() -> None:
    conf = confluent_config(with_kafka(), **{"group.id": "g", "error_cb": print})
    assert conf["group.id"] == "g"
    assert conf["error_cb"] is print


def test_sasl_ssl_maps_credentials_everywhere() -> None:
    settings = with_kafka(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password=SecretStr("s3cret"),
    )
    conf = confluent_config(settings)
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.username"] == "svc"
    assert conf["sasl.password"] == "s3cret"
    aio = aiokafka_config(settings)
    assert aio["sasl_plain_password"] == "s3cret"
    assert isinstance(aio["ssl_context"], ssl.SSLContext)
    credentials = faust_broker_settings(settings)["broker_credentials"]
    assert credentials.username == "svc"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.protocol.value == "SASL_SSL"
    assert "s3cret" not in repr(settings)


def test_tls_file_paths_are_mapped(tmp_path: Path) -> None:
    files = {}
    for name in ("ca", "cert", "key"):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text("x")
    settings = with_kafka(
        security_protocol="SSL",
        ssl_cafile=files["ca"],
        ssl_certfile=files["cert"],
        ssl_keyfile=files["key"],
    )
    conf = confluent_config(settings)
    assert conf["ssl.ca.location"] == str(files["ca"])
    assert conf["ssl.certificate.location"] == str(files["cert"])
    assert conf["ssl.key.location"] == str(files["key"])
    # the files are not real PEM: the Python clients say which files failed
    with pytest.raises(ConfigurationError, match="cannot be loaded"):
        aiokafka_config(settings)


@pytest.mark.parametrize(
    ("kafka", "message"),
    [
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"}, "sasl_username"),
        ({"sasl_username": "u"}, "does not use SASL"),
        ({"ssl_cafile": Path("/etc/hostname")}, "does not use TLS"),
        ({"security_protocol": "SSL", "ssl_certfile": Path("/etc/hostname")}, "go together"),
        ({"security_protocol": "SSL", "ssl_cafile": Path("/nonexistent/ca.pem")}, "readable"),
    ],
)
def test_inconsistent_security_settings_are_refused(kafka: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        confluent_config(with_kafka(**kafka))
