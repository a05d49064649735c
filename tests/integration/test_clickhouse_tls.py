"""ClickHouse's secure native port (``tcp_port_secure``) on Debian's 18.16, proven live: a
separate server process with a certificate made here; the sink backend migrates and inserts
over TLS with the CA from settings and fails clearly with an untrusted CA or without TLS.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cxstream.settings import ClickHouseSettings, Settings
from sinks.clickhouse.backend import ServerBackend, make_backend
from sinks.clickhouse.errors import ClickHouseError, ClickHouseUnavailableError
from sinks.clickhouse.migrations import migrate
from sinks.clickhouse.testing import sample_events
from tests.support.services import LocalStack
from tests.support.tls_servers import (
    ClickHouseTLSServer,
    clickhouse_tls_server,
    make_certificates,
)
from tests.unit.test_clickhouse_contract import build_batches, insert_all, scalar, with_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseTLSServer]:
    certificates = make_certificates(tmp_path_factory.mktemp("clickhouse-tls-certs"))
    with clickhouse_tls_server(tmp_path_factory.mktemp("clickhouse-tls"), certificates) as ch:
        yield ch


def settings_for(base: Settings, server: ClickHouseTLSServer, **fields: Any) -> Settings:
    clickhouse: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.secure_port,
        "secure": True,
        "ca_certs": server.certificates.ca_file,
        "connect_timeout_seconds": 3.0,
        "query_timeout_seconds": 10.0,
    }
    clickhouse.update(fields)
    database = f"tls_{uuid.uuid4().hex[:10]}"
    settings = base.model_copy(update={"clickhouse": ClickHouseSettings(**clickhouse)})
    return with_database(settings, database)


def test_the_sink_backend_migrates_and_inserts_over_tls(
    local_stack: LocalStack, server: ClickHouseTLSServer
) -> None:
    settings = settings_for(local_stack.settings, server)
    backend = make_backend(settings)
    assert isinstance(backend, ServerBackend)
    try:
        assert backend.server_version().startswith("18.16")
        backend.ensure_database()
        report = migrate(backend)
        assert report.applied, "every migration applied over the secure port"
        events = sample_events(60, seed=6, names=["channel_interaction", "access_event"])
        insert_all(
            backend, build_batches(settings, events, topic_prefix=settings.kafka.topic_prefix)
        )
        for name in ("channel_interaction", "access_event"):
            expected = sum(1 for event, _ in events if event == name)
            assert expected > 0
            stored = scalar(backend, f"SELECT count() FROM {{db}}.{name} FINAL")
            assert stored == expected, name
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("case", "fields", "named"),
    [
        ("untrusted CA", {"ca_certs": "untrusted"}, "CERTIFICATE_VERIFY_FAILED"),
        ("CA not given", {"ca_certs": None}, "CERTIFICATE_VERIFY_FAILED"),
        ("no TLS on the secure port", {"secure": False, "ca_certs": None}, "unreachable"),
    ],
)
def test_the_backend_fails_clearly_without_a_trusted_tls_connection(
    local_stack: LocalStack,
    server: ClickHouseTLSServer,
    case: str,
    fields: dict[str, Any],
    named: str,
) -> None:
    if fields.get("ca_certs") == "untrusted":
        fields = {**fields, "ca_certs": Path(server.certificates.untrusted_ca_file)}
    backend = ServerBackend(settings_for(local_stack.settings, server, **fields))
    try:
        with pytest.raises(ClickHouseError, match=named) as error:
            backend.ping()
    finally:
        backend.close()
    assert f"127.0.0.1:{server.secure_port}" in str(error.value), case
    # a refused certificate is a configuration error: the sink must not retry it as an outage
    transient = isinstance(error.value, ClickHouseUnavailableError)
    assert transient == (named == "unreachable"), case
