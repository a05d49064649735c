"""Throw-away certificates and TLS servers (Redis, ClickHouse) for transport-security tests.

Each server is a separate process with its own directory and free ports: the shared stack is
never reconfigured. Certificates are made here with ``cryptography`` (a CA, a server and a client
certificate signed by it, and a second CA that signed nothing, for "untrusted" cases).
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cxstream.settings import StackSettings
from cxstream.stack import process
from cxstream.stack.clickhouse import config_xml, users_xml
from cxstream.stack.service import find_executable
from tests.support.services import free_port

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Certificates:
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    #: a CA that signed none of the above
    untrusted_ca_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    common_name: str,
    names: Sequence[x509.GeneralName],
) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def make_certificates(directory: Path, host: str = HOST) -> Certificates:
    """A CA, a server certificate for ``host`` (IP and localhost SANs), a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = _ca("cxstream test CA")
    _, other = _ca("some other CA")
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(host))]
    server = _leaf(ca_key, ca, "localhost", names)
    client = _leaf(ca_key, ca, "cx-app", [])
    paths = Certificates(
        ca_file=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        untrusted_ca_file=directory / "other-ca.pem",
    )
    pem = serialization.Encoding.PEM
    paths.ca_file.write_bytes(ca.public_bytes(pem))
    paths.untrusted_ca_file.write_bytes(other.public_bytes(pem))
    for (cert, key), cert_path, key_path in (
        (server, paths.server_cert, paths.server_key),
        (client, paths.client_cert, paths.client_key),
    ):
        cert_path.write_bytes(cert)
        key_path.write_bytes(key)
        key_path.chmod(0o600)
    return paths


def _wait_listening(port: int, pid: int, log: Path, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            if not process.is_alive(pid):
                raise RuntimeError(f"{what} exited: {process.tail(log, 20)}") from None
            if time.monotonic() > deadline:
                tail = process.tail(log, 20)
                raise TimeoutError(f"{what} not listening on {port}: {tail}") from None
            time.sleep(0.05)


@dataclass(frozen=True)
class RedisTLSServer:
    tls_port: int
    certificates: Certificates

    @property
    def url(self) -> str:
        return f"rediss://{HOST}:{self.tls_port}/0"


@contextmanager
def redis_tls_server(
    directory: Path,
    certificates: Certificates,
    users: dict[str, str],
    *,
    key_pattern: str = "*",
    require_client_cert: bool = False,
) -> Iterator[RedisTLSServer]:
    """A redis-server with only a TLS port; ``default`` user disabled, ``users`` (name ->
    password) allowed on keys matching ``key_pattern``."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        find_executable("redis-server", "install Redis (apt-get install redis-server)"),
        "--port", "0", "--tls-port", str(port), "--bind", HOST,
        "--tls-cert-file", str(certificates.server_cert),
        "--tls-key-file", str(certificates.server_key),
        "--tls-ca-cert-file", str(certificates.ca_file),
        "--tls-auth-clients", "yes" if require_client_cert else "no",
        "--save", "", "--appendonly", "no", "--dir", str(directory),
        "--user", "default", "off",
    ]  # fmt: skip
    for name, password in users.items():
        argv += ["--user", name, "on", f">{password}", f"~{key_pattern}", "+@all"]
    log = directory / "redis.log"
    pid = process.spawn(argv, log_file=log, cwd=directory)
    try:
        _wait_listening(port, pid, log, 10.0, "redis-server (TLS)")
        yield RedisTLSServer(port, certificates)
    finally:
        process.terminate(pid, timeout=10.0)


@dataclass(frozen=True)
class ClickHouseTLSServer:
    tcp_port: int
    secure_port: int
    certificates: Certificates


def _secure_section(port: int, certificates: Certificates) -> str:
    # Poco's server-side OpenSSL settings of 18.16 (its shipped config.xml names the keys);
    # the server does not ask for client certificates
    return f"""    <tcp_port_secure>{port}</tcp_port_secure>
    <openSSL>
        <server>
            <certificateFile>{certificates.server_cert}</certificateFile>
            <privateKeyFile>{certificates.server_key}</privateKeyFile>
            <verificationMode>none</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>true</cacheSessions>
            <disableProtocols>sslv2,sslv3</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>
</yandex>"""


@contextmanager
def clickhouse_tls_server(
    directory: Path, certificates: Certificates
) -> Iterator[ClickHouseTLSServer]:
    """A clickhouse-server of its own (the stack's config plus ``tcp_port_secure``)."""
    ports = [free_port() for _ in range(3)]
    stack = StackSettings(home=directory, clickhouse_port=ports[0], clickhouse_http_port=ports[1])
    for sub in ("data", "tmp", "user_files", "format_schemas"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    users_file, log = directory / "users.xml", directory / "clickhouse.log"
    users_file.write_text(users_xml())
    config = config_xml(stack, base=directory, users_file=users_file, log_file=log,
                        error_log_file=directory / "clickhouse.err.log")  # fmt: skip
    config_file = directory / "config.xml"
    config_file.write_text(config.replace("</yandex>", _secure_section(ports[2], certificates)))
    server = find_executable(
        "clickhouse-server",
        "install ClickHouse (apt-get install clickhouse-server)",
        extra_dirs=("/usr/sbin", "/usr/bin"),
    )
    console = directory / "console.log"
    pid = process.spawn([server, f"--config-file={config_file}"], log_file=console, cwd=directory)
    try:
        _wait_listening(ports[2], pid, log, 30.0, "clickhouse-server (TLS)")
        yield ClickHouseTLSServer(ports[0], ports[2], certificates)
    finally:
        process.terminate(pid, timeout=15.0)
