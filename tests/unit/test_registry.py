"""Registries: the embedded one, our Confluent-compatible server and the HTTP client.

The server runs for real on a free loopback port (started in-process, well under a second), and
the client talks HTTP to it: no service outside the test is needed.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from cxstream.errors import SchemaError, ServiceError
from cxstream.settings import RegistrySettings, Settings
from schemas import load_catalog
from schemas.catalog import read_lock
from streams.codec import AvroCodec, build_codec
from streams.registry import (
    EmbeddedRegistry,
    SchemaRegistry,
    build_registry,
    name_for_subject,
    normalized,
    subject_for,
)
from streams.registry_http import ConfluentRegistryClient
from streams.registry_server import running_server

CATALOG = load_catalog()
SETTINGS = Settings()


def with_registry(url: str | None, **fields: object) -> Settings:
    return SETTINGS.model_copy(update={"registry": RegistrySettings(url=url, **fields)})


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with running_server(SETTINGS) as url:
        yield url


@pytest.fixture
def client(server: str) -> Iterator[ConfluentRegistryClient]:
    with ConfluentRegistryClient(with_registry(server), catalog=CATALOG) as c:
        yield c


def test_embedded_registry_serves_locked_ids() -> None:
    registry = EmbeddedRegistry(CATALOG)
    assert isinstance(registry, SchemaRegistry)
    lock = read_lock()
    for name in registry.names():
        newest = max(lock[name], key=int)
        assert registry.latest(name).schema_id == lock[name][newest]
        for version, schema_id in lock[name].items():
            assert registry.by_id(schema_id).version == int(version)
    with pytest.raises(SchemaError, match="unknown schema 'nope'"):
        registry.latest("nope")
    with pytest.raises(SchemaError, match="unknown schema id 999"):
        registry.by_id(999)


def test_subject_naming_is_topic_name_strategy() -> None:
    settings = SETTINGS.model_copy(
        update={"kafka": SETTINGS.kafka.model_copy(update={"topic_prefix": "bank7"})})
    assert subject_for(settings, "transaction") == "bank7.transaction-value"
    assert name_for_subject(settings, "bank7.transaction-value") == "transaction"
    assert name_for_subject(settings, "cx.transaction-value") is None
    assert name_for_subject(settings, "bank7.transaction-key") is None


def test_normalized_ignores_spacing_and_key_order() -> None:
    definition = CATALOG.latest("alert").definition
    assert normalized(json.dumps(definition, indent=4)) == normalized(
        dict(reversed(list(definition.items()))))
    assert normalized(definition) != normalized({**definition, "doc": "other"})


def test_build_registry_and_codec_follow_the_settings(server: str) -> None:
    assert isinstance(build_registry(SETTINGS), EmbeddedRegistry)
    remote = build_registry(with_registry(server))
    assert isinstance(remote, ConfluentRegistryClient)
    codec = build_codec(with_registry(server, latest_cache_seconds=0))
    assert isinstance(codec, AvroCodec)
    assert codec.max_event_bytes == SETTINGS.max_event_bytes
    remote.close()


# --------------------------------------------------------------------------- the server


def test_server_lists_subjects_versions_and_config(server: str) -> None:
    subjects = httpx.get(f"{server}/subjects").json()
    assert subjects == sorted(subject_for(SETTINGS, n) for n in CATALOG.names())
    assert httpx.get(f"{server}/subjects/cx.channel_interaction-value/versions").json() == [1, 2]
    latest = httpx.get(f"{server}/subjects/cx.channel_interaction-value/versions/latest")
    assert latest.headers["content-type"].startswith("application/vnd.schemaregistry.v1+json")
    body = latest.json()
    assert (body["version"], body["id"]) == (2, CATALOG.latest("channel_interaction").schema_id)
    assert json.loads(body["schema"]) == CATALOG.latest("channel_interaction").definition
    raw = httpx.get(f"{server}/schemas/ids/3/schema").json()
    assert raw == CATALOG.by_id(3).definition
    assert httpx.get(f"{server}/schemas/ids/3/versions").json() == [
        {"subject": "cx.channel_interaction-value", "version": 1}]
    assert httpx.get(f"{server}/config").json() == {"compatibilityLevel": "BACKWARD_TRANSITIVE"}


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/subjects/nope-value/versions", 404, 40401),
        ("/subjects/cx.transaction-value/versions/7", 404, 40402),
        ("/subjects/cx.transaction-value/versions/x", 422, 42202),
        ("/schemas/ids/999", 404, 40403),
    ],
)
def test_server_errors_use_confluent_codes(server: str, path: str, status: int,
                                           code: int) -> None:
    response = httpx.get(f"{server}{path}")
    assert response.status_code == status
    assert response.json()["error_code"] == code


def test_server_refuses_to_assign_ids(server: str) -> None:
    subject = "cx.transaction-value"
    definition = json.loads(CATALOG.latest("transaction").canonical)
    definition["fields"].insert(-1, {"name": "note", "type": ["null", "string"], "default": None,
                                     "doc": "d"})
    compatible = httpx.post(f"{server}/subjects/{subject}/versions",
                            json={"schema": json.dumps(definition)})
    assert compatible.status_code == 422
    assert compatible.json()["error_code"] == 42205
    assert "cxstream schemas lock" in compatible.json()["message"]
    definition["fields"].insert(-1, {"name": "must", "type": "string", "doc": "d"})
    breaking = httpx.post(f"{server}/subjects/{subject}/versions",
                          json={"schema": json.dumps(definition)})
    assert breaking.status_code == 409
    assert "must" in breaking.json()["message"]
    check = httpx.post(f"{server}/compatibility/subjects/{subject}/versions/latest?verbose=true",
                       json={"schema": json.dumps(definition)}).json()
    assert check["is_compatible"] is False
    assert any("'must'" in m for m in check["messages"])
    invalid = httpx.post(f"{server}/subjects/{subject}/versions", json={"schema": "{"})
    assert invalid.status_code == 422
    assert invalid.json()["error_code"] == 42201


# --------------------------------------------------------------------------- the HTTP client


def test_client_reads_and_registers_with_the_servers_ids(client: ConfluentRegistryClient) -> None:
    for sv in CATALOG:
        assert client.register(sv.name, sv.definition) == sv.schema_id
        found = client.by_id(sv.schema_id)
        assert (found.name, found.version, found.definition) == (sv.name, sv.version,
                                                                 sv.definition)
        looked_up = client.lookup(sv.name, sv.canonical)
        assert looked_up is not None
        assert looked_up.schema_id == sv.schema_id
    newest = client.latest("channel_interaction")
    assert newest.version == 2
    assert newest.schema_id == CATALOG.latest("channel_interaction").schema_id
    assert client.lookup("transaction", {"type": "record", "name": "X", "fields": []}) is None
    ids = client.sync()
    assert ids == {(sv.name, sv.version): sv.schema_id for sv in CATALOG}
    assert client.check_compatibility("transaction", CATALOG.latest("transaction").definition
                                      ).is_compatible


def test_codec_over_http_matches_the_embedded_codec(server: str) -> None:
    embedded = AvroCodec(EmbeddedRegistry(CATALOG))
    with ConfluentRegistryClient(with_registry(server), catalog=CATALOG) as remote:
        codec = AvroCodec(remote)
        record = {"event_id": "e", "occurred_at": 1, "customer_id": "C", "consent": "marketing",
                  "granted": False}
        data = codec.encode("consent_changed", record)
        assert data == embedded.encode("consent_changed", record)
        assert codec.decode(data) == embedded.decode(data)
        with pytest.raises(SchemaError, match="not registered"):
            remote.latest("no_such_event")


def test_client_sends_basic_auth_from_settings() -> None:
    with running_server(SETTINGS, credentials=("cx", "s3cret")) as url:
        anonymous = ConfluentRegistryClient(with_registry(url), catalog=CATALOG)
        with pytest.raises(ServiceError, match="HTTP 401"):
            anonymous.by_id(3)
        authed = ConfluentRegistryClient(
            with_registry(url, username="cx", password=SecretStr("s3cret")), catalog=CATALOG)
        assert authed.by_id(3).name == "channel_interaction"
        in_url = url.replace("http://", "http://cx:s3cret@")
        from_url = ConfluentRegistryClient(with_registry(in_url), catalog=CATALOG)
        assert from_url.by_id(17).name == "transaction"
        assert "s3cret" not in from_url.url
        for c in (anonymous, authed, from_url):
            c.close()


def test_unreachable_registry_is_a_service_error_without_secrets() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = with_registry(f"http://cx:hunter2@127.0.0.1:{port}", timeout_seconds=2)
    with ConfluentRegistryClient(settings, catalog=CATALOG) as c, \
            pytest.raises(ServiceError) as info:
        c.latest("transaction")
    assert f"127.0.0.1:{port}/subjects/cx.transaction-value/versions/latest" in str(info.value)
    assert "hunter2" not in str(info.value)
