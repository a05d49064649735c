"""Kafka over SASL_SSL with SCRAM-SHA-512: a separate broker of the native stack with an extra
listener, its CA and certificate made here; every client kind connects with the right
credentials and fails with a clear error (naming SASL or TLS) without them.

The broker keeps its PLAINTEXT listener for the inter-broker traffic and for creating the SCRAM
user through the admin API (KRaft stores SCRAM credentials in its metadata log).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import (
    AdminClient,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from cxstream.errors import ServiceError
from cxstream.settings import KafkaSettings, Settings
from cxstream.stack import process
from cxstream.stack.kafka import KafkaService, Listener
from streams.codec import build_codec
from streams.kafka_config import (
    aiokafka_config,
    check_connection,
    check_connection_async,
    confluent_config,
    faust_broker_settings,
)
from streams.producer import EventProducer
from tests.support.services import LocalStack, free_port

pytestmark = pytest.mark.integration
USER = "cx-app"
PASSWORD = "scram-pw-" + uuid.uuid4().hex[:8]
_LISTENER = "listener.name.sasl_ssl."


@dataclass(frozen=True)
class CertificateFiles:
    ca_file: Path
    #: private key (PKCS#8) + certificate chain, the broker's PEM key store
    server_pem: Path
    cert_file: Path
    key_file: Path


def make_certificates(directory: Path, host: str = "127.0.0.1") -> CertificateFiles:
    """A throw-away CA and a server certificate for ``host`` (IP and localhost SANs)."""
    now = datetime.datetime.now(datetime.UTC)
    valid = {"not_valid_before": now - datetime.timedelta(minutes=5),
             "not_valid_after": now + datetime.timedelta(days=1)}  # fmt: skip
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cxstream test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid["not_valid_before"])
        .not_valid_after(valid["not_valid_after"])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(host))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid["not_valid_before"])
        .not_valid_after(valid["not_valid_after"])
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = CertificateFiles(
        directory / "ca.pem",
        directory / "server.pem",
        directory / "cert.pem",
        directory / "key.pem",
    )
    paths.ca_file.write_bytes(ca.public_bytes(pem))
    paths.cert_file.write_bytes(cert.public_bytes(pem) + ca.public_bytes(pem))
    paths.key_file.write_bytes(key_pem)
    paths.server_pem.write_bytes(key_pem + cert.public_bytes(pem) + ca.public_bytes(pem))
    for path in (paths.key_file, paths.server_pem):
        path.chmod(0o600)
    return paths


@dataclass(frozen=True)
class SecureKafka:
    base: Settings
    ca: CertificateFiles
    sasl_port: int
    plain_bootstrap: str

    def settings(self, **kafka: object) -> Settings:
        """Client settings for the SASL_SSL listener; ``kafka`` overrides fields."""
        fields = {
            "bootstrap_servers": f"127.0.0.1:{self.sasl_port}",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": USER,
            "sasl_password": SecretStr(PASSWORD),
            "ssl_cafile": self.ca.ca_file,
            "topic_prefix": self.base.kafka.topic_prefix,
        }
        fields.update(kafka)
        return self.base.model_copy(update={"kafka": KafkaSettings(**fields)})


@pytest.fixture(scope="module")
def secure_kafka(
    local_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureKafka]:
    root = tmp_path_factory.mktemp("sasl-kafka")
    ca = make_certificates(root / "tls")
    ports = [free_port() for _ in range(3)]
    stack = local_stack.settings.stack.model_copy(
        update={"home": root / "stack", "kafka_port": ports[0], "kafka_controller_port": ports[1]}
    )
    base = local_stack.settings.model_copy(update={"stack": stack})
    svc = KafkaService(
        base,
        extra_listeners=[Listener("SASL_SSL", ports[2], "SASL_SSL")],
        extra_properties={
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            _LISTENER + "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            _LISTENER + "scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            _LISTENER + "ssl.keystore.type": "PEM",
            _LISTENER + "ssl.keystore.location": str(ca.server_pem),
        },
    )
    # the session stack's jars: a second Maven resolution would only cost time
    shared = local_stack.settings.stack.home / "kafka" / "libs"
    if shared.is_dir():
        svc.dir.mkdir(parents=True, exist_ok=True)
        svc.libs_dir.symlink_to(shared, target_is_directory=True)
    svc.prepare()
    pid = process.spawn(svc.argv(), log_file=svc.console_file, cwd=svc.dir)
    try:
        deadline = time.monotonic() + base.stack.start_timeout_seconds
        while not svc.healthy(1.0):
            assert process.is_alive(pid), process.tail(svc.console_file, 30)
            assert time.monotonic() < deadline, "SASL_SSL Kafka did not start"
            time.sleep(0.2)
        admin = AdminClient({"bootstrap.servers": svc.bootstrap_servers})
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
        upsert = UserScramCredentialUpsertion(USER, info, PASSWORD.encode())
        for future in admin.alter_user_scram_credentials([upsert]).values():
            future.result(timeout=30)
        yield SecureKafka(base, ca, ports[2], svc.bootstrap_servers)
    finally:
        process.terminate(pid, timeout=base.stack.stop_timeout_seconds)


def create_topic(secure: SecureKafka, name: str) -> None:
    admin = AdminClient(confluent_config(secure.settings()))  # over SASL_SSL itself
    for future in admin.create_topics([NewTopic(name, 1, 1)]).values():
        future.result(timeout=30)


def test_connection_checks_pass_with_the_right_credentials(secure_kafka: SecureKafka) -> None:
    settings = secure_kafka.settings()
    check_connection(settings, timeout=10)
    asyncio.run(check_connection_async(settings, timeout=10))


def test_confluent_clients_produce_and_consume(secure_kafka: SecureKafka) -> None:
    settings = secure_kafka.settings(topic_prefix=f"sasl{uuid.uuid4().hex[:8]}")
    topic = settings.topic("consent_changed")
    create_topic(secure_kafka, topic)
    codec = build_codec(settings)
    record = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": 1_767_225_600_000,
        "customer_id": "cust-sasl-1",
        "consent": "personalisation",
        "granted": False,
        "channel": "app",
        "source": "test",
    }
    with EventProducer(settings, codec) as producer:  # the producer SDK, unchanged
        producer.produce("consent_changed", record)
        producer.flush(30)
    consumer = Consumer(
        confluent_config(
            settings, **{"group.id": f"g-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest"}
        )
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        message = None
        while message is None and time.monotonic() < deadline:
            message = consumer.poll(1.0)
        assert message is not None
        assert message.error() is None
        decoded = codec.decode(message.value() or b"")
    finally:
        consumer.close()
    assert decoded.name == "consent_changed"
    assert decoded.record["event_id"] == record["event_id"]


async def test_aiokafka_and_faust_produce_and_consume(secure_kafka: SecureKafka) -> None:
    import faust
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    settings = secure_kafka.settings()
    topic = f"sasl-ai-{uuid.uuid4().hex[:8]}"
    create_topic(secure_kafka, topic)
    producer = AIOKafkaProducer(**aiokafka_config(settings))
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"from-aiokafka", key=b"k")
    finally:
        await producer.stop()
    # Faust's own producer with the broker settings Faust apps get (credentials object)
    app = faust.App(f"cx-sasl-{uuid.uuid4().hex[:6]}", web_enabled=False,
                    **faust_broker_settings(settings))  # fmt: skip
    await app.producer.start()
    try:
        await app.producer.send_and_wait(
            topic, b"k", b"from-faust", partition=None, timestamp=None, headers=None
        )
    finally:
        await app.producer.stop()
    consumer = AIOKafkaConsumer(
        topic, auto_offset_reset="earliest", group_id=None, **aiokafka_config(settings)
    )
    await consumer.start()
    try:
        got = await consumer.getmany(timeout_ms=10_000, max_records=10)
        values = sorted(m.value for batch in got.values() for m in batch if m.value)
    finally:
        await consumer.stop()
    assert values == [b"from-aiokafka", b"from-faust"]


@pytest.mark.parametrize(
    ("case", "overrides", "named"),
    [
        ("wrong password", {"sasl_password": SecretStr("not-the-password")}, "SASL authentication"),
        ("unknown user", {"sasl_username": "nobody"}, "SASL authentication"),
        ("CA not given", {"ssl_cafile": None}, "TLS: the broker's certificate is not trusted"),
        (
            "no credentials",
            {
                "security_protocol": "PLAINTEXT",
                "sasl_mechanism": None,
                "sasl_username": None,
                "sasl_password": None,
                "ssl_cafile": None,
            },
            "requires TLS/SASL",
        ),
        (
            "TLS without SASL",
            {
                "security_protocol": "SSL",
                "sasl_mechanism": None,
                "sasl_username": None,
                "sasl_password": None,
            },
            "requires SASL",
        ),
    ],
)
def test_clients_fail_with_an_error_naming_sasl_or_tls(
    secure_kafka: SecureKafka, case: str, overrides: dict[str, object], named: str
) -> None:
    settings = secure_kafka.settings(**overrides)
    with pytest.raises(ServiceError, match=named) as confluent_error:
        check_connection(settings, timeout=5)
    with pytest.raises(ServiceError, match=named) as aiokafka_error:
        asyncio.run(check_connection_async(settings, timeout=5))
    for error in (confluent_error.value, aiokafka_error.value):
        assert PASSWORD not in str(error), case
        assert f"127.0.0.1:{secure_kafka.sasl_port}" in str(error)


def test_the_plaintext_listener_is_unaffected(secure_kafka: SecureKafka) -> None:
    # the same broker still serves its PLAINTEXT listener (inter-broker, local admin)
    plain = secure_kafka.base.model_copy(
        update={"kafka": KafkaSettings(bootstrap_servers=secure_kafka.plain_bootstrap)}
    )
    check_connection(plain, timeout=10)
