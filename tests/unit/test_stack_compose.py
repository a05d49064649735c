"""docker/compose.yml and docker/Dockerfile, checked without Docker (none runs on CI machines)."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml
from pydantic import BaseModel

from cxstream.cli import cli
from cxstream.settings import Settings
from dashboards.datasource import DATASOURCE_UID

_DOCKER = Path(__file__).resolve().parents[2] / "docker"
_DASHBOARDS = _DOCKER.parent / "dashboards"
_SUBSTITUTION = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")
#: the processes `cxstream demo` runs besides the simulator, and the migrate step
PLATFORM = {"migrate", "worker", "sink", "api", "notifier", "oncall"}


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
    assert set(worker["depends_on"]) == {"migrate", "redis"}
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


def _with_defaults(value: str) -> str:
    """``value`` as compose would pass it with none of the ``${VAR:-default}`` variables set."""
    return _SUBSTITUTION.sub(lambda m: m.group(2) or "", value)


def _settings_of(
    service: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Settings:
    monkeypatch.chdir(tmp_path)  # no developer .env file may leak in
    for name in [n for n in os.environ if n.startswith("CX_")]:
        monkeypatch.delenv(name)
    for name, value in _environment(service).items():
        monkeypatch.setenv(name, _with_defaults(value))
    return Settings()


def test_worker_environment_loads_into_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = _settings_of(compose["services"]["worker"], monkeypatch, tmp_path)
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


def _cxstream_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if s.get("image") == "cxstream:dev"}


def _invocations(command: list[str]) -> list[list[str]]:
    """The cxstream argument lists a service command runs (``sh -c "a && b"`` runs two)."""
    if command[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in command[2].split("&&")]
    return [command]


def _resolve(args: list[str]) -> click.Command:
    """The click command ``cxstream ARGS`` runs; its options and arguments must parse."""
    assert args[0] == "cxstream", args
    command: click.Command = cli
    rest = args[1:]
    parent = click.Context(cli, info_name="cxstream")
    while isinstance(command, click.Group):
        assert rest, f"{args}: a group needs a subcommand"
        sub = command.get_command(parent, rest[0])
        assert sub is not None, f"{args}: {rest[0]!r} is not a cxstream command"
        parent = click.Context(sub, info_name=rest[0], parent=parent)
        command, rest = sub, rest[1:]
    command.make_context(str(command.name), list(rest), parent=parent.parent)
    return command


def test_compose_runs_the_demo_platform_minus_the_simulator(compose: dict[str, Any]) -> None:
    assert set(_cxstream_services(compose)) == PLATFORM
    commands = {
        name: [args[1:3] for args in _invocations(service["command"])]
        for name, service in _cxstream_services(compose).items()
    }
    assert commands["migrate"] == [["topics", "apply"], ["db", "migrate"]]
    assert commands["worker"] == [["worker", "--no-ensure-topics"]]
    assert commands["sink"] == [["sink"]]
    assert commands["api"] == [["api"]]
    assert commands["notifier"] == [["notify", "serve"]]
    assert commands["oncall"] == [["notify", "receiver"]]


def test_every_command_is_a_real_cxstream_subcommand(compose: dict[str, Any]) -> None:
    for name, service in _cxstream_services(compose).items():
        for args in _invocations(service["command"]):
            _resolve(args)  # raises on an unknown command or option
        assert service["build"]["dockerfile"] == "docker/Dockerfile", name
    with pytest.raises(click.UsageError):  # the check itself refuses what does not parse
        _resolve(["cxstream", "worker", "--no-such-option"])


def test_everything_waits_for_the_migrate_step(compose: dict[str, Any]) -> None:
    services = _cxstream_services(compose)
    migrate = services["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "clickhouse": {"condition": "service_healthy"},
    }
    for name in ("worker", "sink", "api", "notifier"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }, name


@pytest.mark.parametrize("name", sorted(PLATFORM))
def test_service_settings_point_at_compose_services(
    compose: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = _settings_of(compose["services"][name], monkeypatch, tmp_path)
    services = set(compose["services"])
    if name == "oncall":  # the receiver needs only its secret
        assert [s.get_secret_value() for s in settings.notify.webhook_secrets]
        return
    hosts = {
        "kafka": settings.kafka.bootstrap_servers.split(":")[0],
        "redis": urlsplit(settings.redis.url).hostname,
        "clickhouse": settings.clickhouse.host,
    }
    assert hosts == {"kafka": "kafka", "redis": "redis", "clickhouse": "clickhouse"}
    assert settings.clickhouse.password is not None
    if name == "api":
        assert urlsplit(settings.api.worker_url or "").hostname in services
        assert settings.api.host == "0.0.0.0"
        assert (
            f"127.0.0.1:{settings.api.port}:{settings.api.port}"
            in compose["services"]["api"]["ports"]
        )
    if name == "notifier":
        departments = {route.department for route in settings.notify.routes}
        assert departments == {"customer_service", "it", "risk_control"}
        rotations = {r.name for r in settings.notify.rotations}
        assert {route.rotation for route in settings.notify.routes} <= rotations
        urls = [m.webhook_url or "" for r in settings.notify.rotations for m in r.members]
        assert {urlsplit(u).hostname for u in urls} == {"oncall"}
        receiver = _settings_of(compose["services"]["oncall"], monkeypatch, tmp_path)
        assert [s.get_secret_value() for s in settings.notify.webhook_secrets] == [
            s.get_secret_value() for s in receiver.notify.webhook_secrets
        ]


def test_grafana_provisioning_matches_the_mounts_and_boards(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if ":ro" in v)
    assert mounts["../dashboards/json"] == "/var/lib/grafana/dashboards"
    provider_file = _DASHBOARDS / "provisioning" / "dashboards" / "cxstream.yaml"
    provider = yaml.safe_load(provider_file.read_text())["providers"][0]
    assert provider["options"]["path"] == mounts["../dashboards/json"]
    source_file = _DASHBOARDS / "provisioning" / "datasources" / "clickhouse.yaml"
    source_text = source_file.read_text()
    source = yaml.safe_load(source_text)["datasources"][0]
    assert source["uid"] == DATASOURCE_UID
    # every ${VAR} of the datasource file is set in Grafana's environment
    env = _environment(grafana)
    assert {m.group(1) for m in _SUBSTITUTION.finditer(source_text)} <= set(env)
    assert env["CLICKHOUSE_HOST"] in compose["services"]
    boards = sorted((_DASHBOARDS / "json").glob("*.json"))
    assert boards
    for path in boards:
        uids = set(re.findall(r'"uid":\s*"(cxstream-clickhouse[^"]*)"', path.read_text()))
        assert uids == {DATASOURCE_UID}, path.name
