"""docker/compose.yml and docker/Dockerfile, checked without Docker (none runs on CI machines)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from cxstream.settings import Settings

_DOCKER = Path(__file__).resolve().parents[2] / "docker"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((_DOCKER / "compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the "KEY=value" list form
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _settings_field(env_name: str) -> tuple[str, ...] | None:
    """The Settings field path an env var name sets (as pydantic-settings maps it), or None."""
    if not env_name.startswith("CX_"):
        return None
    parts = env_name[len("CX_") :].lower().split("__")
    model: type[BaseModel] = Settings
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        last = depth == len(parts) - 1
        if not last:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return None
            model = annotation
    return tuple(parts)


def test_services_and_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"kafka", "redis", "clickhouse", "grafana", "worker"}
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    assert services["redis"]["image"].startswith("redis:7")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server")
    assert services["grafana"]["image"].startswith("grafana/grafana-oss")


def test_kafka_is_single_node_kraft_like_the_native_stack(compose: dict[str, Any]) -> None:
    env = _environment(compose["services"]["kafka"])
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "EXTERNAL://localhost:19092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_grafana_mounts_dashboards_read_only(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    assert "grafana-clickhouse-datasource" in _environment(grafana)["GF_INSTALL_PLUGINS"]
    volumes = grafana["volumes"]
    assert "../dashboards/provisioning:/etc/grafana/provisioning:ro" in volumes
    assert "../dashboards/json:/var/lib/grafana/dashboards:ro" in volumes


def test_worker_is_built_from_the_dockerfile(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert worker["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    assert (_DOCKER.parent / worker["build"]["dockerfile"]).is_file()
    assert set(worker["depends_on"]) == {"kafka", "redis", "clickhouse"}
    dockerfile = (_DOCKER / "Dockerfile").read_text()
    assert dockerfile.startswith("#")
    assert "FROM python:3.11-slim" in dockerfile
    assert 'CMD ["cxstream", "worker"]' in dockerfile


def test_every_cx_variable_is_a_real_setting(compose: dict[str, Any]) -> None:
    seen = 0
    for name, service in compose["services"].items():
        for env_name in _environment(service):
            if env_name.startswith("CX_"):
                seen += 1
                assert _settings_field(env_name) is not None, f"{name}: {env_name} sets nothing"
    assert seen >= 5


def test_worker_environment_loads_into_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env file may leak in
    env = _environment(compose["services"]["worker"])
    for name, value in env.items():
        # compose would substitute ${VAR:-default}; take the default here
        if value.startswith("${") and ":-" in value:
            value = value.split(":-", 1)[1].rstrip("}")
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.redis.url == "redis://redis:6379/0"
    assert settings.clickhouse.host == "clickhouse"
    assert settings.clickhouse.port == 9000
    assert settings.clickhouse.password is not None
    assert settings.worker.web_host == "0.0.0.0"


def test_settings_field_rejects_unknown_names() -> None:
    assert _settings_field("CX_KAFKA__BOOTSTRAP_SERVERS") == ("kafka", "bootstrap_servers")
    assert _settings_field("CX_LOG_LEVEL") == ("log_level",)
    assert _settings_field("CX_KAFKA__BOOTSTRAP_SERVER") is None
    assert _settings_field("CX_KAFKA") == ("kafka",)
    assert _settings_field("CX_LOG_LEVEL__X") is None
    assert _settings_field("KAFKA_NODE_ID") is None
