"""Config generation of the native stack (no processes, no services)."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cxstream.errors import ConfigurationError
from cxstream.settings import Settings, StackSettings
from cxstream.stack.clickhouse import ClickHouseService, config_xml, users_xml
from cxstream.stack.kafka import (
    KafkaService,
    Listener,
    new_cluster_id,
    render_properties,
    server_properties,
)
from cxstream.stack.redis import RedisService, redis_conf
from cxstream.stack.service import package_file


@pytest.fixture
def stack(tmp_path: Path) -> StackSettings:
    return StackSettings(
        home=tmp_path / "stack",
        kafka_port=29092,
        kafka_controller_port=29093,
        redis_port=26379,
        clickhouse_port=29000,
        clickhouse_http_port=28123,
    )


def _parse_properties(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_server_properties_single_node_kraft(stack: StackSettings, tmp_path: Path) -> None:
    props = _parse_properties(render_properties(server_properties(stack, data_dir=tmp_path)))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"
    assert props["log.dirs"] == str(tmp_path)


def test_server_properties_extra_listener_and_overrides(
    stack: StackSettings, tmp_path: Path
) -> None:
    props = server_properties(
        stack,
        data_dir=tmp_path,
        extra_listeners=[Listener("SASL_SSL", 29094, "SASL_SSL")],
        extra={"sasl.enabled.mechanisms": "SCRAM-SHA-512", "num.partitions": "4"},
    )
    assert props["listeners"].endswith(",SASL_SSL://127.0.0.1:29094")
    assert "SASL_SSL://127.0.0.1:29094" in props["advertised.listeners"]
    assert "CONTROLLER" not in props["advertised.listeners"]
    assert "SASL_SSL:SASL_SSL" in props["listener.security.protocol.map"].split(",")
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["num.partitions"] == "4"


def test_server_properties_rejects_clashing_listeners(stack: StackSettings, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="share a port"):
        server_properties(stack, data_dir=tmp_path, extra_listeners=[Listener("X", 29092, "SSL")])
    with pytest.raises(ConfigurationError, match="duplicate"):
        server_properties(
            stack, data_dir=tmp_path, extra_listeners=[Listener("PLAINTEXT", 1, "PLAINTEXT")]
        )


def test_kafka_service_files_and_argv(
    stack: StackSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = KafkaService(Settings(stack=stack))
    monkeypatch.setattr(svc, "java", lambda: "/usr/bin/java")
    argv = svc.argv()
    assert argv[0] == "/usr/bin/java"
    assert "-Xmx768m" in argv
    assert argv[-2:] == ["kafka.Kafka", str(stack.home / "kafka" / "server.properties")]
    assert f"-Dkafka.logs.dir={stack.home / 'logs'}" in argv
    assert svc.matches(argv)
    other_home = ["/usr/bin/java", "kafka.Kafka", "/elsewhere/server.properties"]
    assert not svc.matches(other_home)
    assert svc.ports == (29092, 29093)


def test_kafka_libs_present_needs_configured_version(stack: StackSettings) -> None:
    svc = KafkaService(Settings(stack=stack))
    assert not svc.libs_present()
    svc.libs_dir.mkdir(parents=True)
    (svc.libs_dir / "kafka_2.13-4.0.0.jar").touch()
    (svc.libs_dir / "log4j-slf4j-impl-2.24.3.jar").touch()
    assert not svc.libs_present()  # another version is not a cache hit
    (svc.libs_dir / f"kafka_2.13-{stack.kafka_version}.jar").touch()
    assert svc.libs_present()


def test_cluster_id_is_kafka_uuid() -> None:
    for _ in range(50):
        cluster_id = new_cluster_id()
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_shipped_maven_and_log4j_files_are_well_formed() -> None:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    pom = ET.fromstring(package_file("pom.xml"))
    artifacts = {el.text for el in pom.findall("m:dependencies/m:dependency/m:artifactId", ns)}
    assert {"kafka_2.13", "log4j-slf4j-impl"} <= artifacts
    log4j = ET.fromstring(package_file("log4j2.xml"))
    (appender,) = log4j.findall("Appenders/RollingFile")
    assert appender.get("fileName") == "${logDir}/kafka.log"


def test_clickhouse_config_is_well_formed_xml(stack: StackSettings) -> None:
    base = stack.home / "click & house"  # a character XML must escape
    root = ET.fromstring(
        config_xml(
            stack,
            base=base,
            users_file=base / "users.xml",
            log_file=stack.home / "logs" / "clickhouse.log",
            error_log_file=stack.home / "logs" / "clickhouse.err.log",
        )
    )
    assert root.tag == "yandex"  # what 18.16 requires (newer servers accept it too)
    assert root.findtext("tcp_port") == "29000"
    assert root.findtext("http_port") == "28123"
    assert root.findtext("listen_host") == "127.0.0.1"
    assert root.findtext("path") == f"{base}/data/"
    assert root.findtext("tmp_path") == f"{base}/tmp/"
    assert root.findtext("logger/log") == str(stack.home / "logs" / "clickhouse.log")
    assert root.find("interserver_http_port") is None


def test_clickhouse_users_default_user_loopback_only() -> None:
    root = ET.fromstring(users_xml(max_memory_usage=123))
    assert root.findtext("profiles/default/max_memory_usage") == "123"
    default = root.find("users/default")
    assert default is not None
    assert default.findtext("password") == ""
    assert [ip.text for ip in default.findall("networks/ip")] == ["::1", "127.0.0.1"]


def test_clickhouse_service_argv_matches(stack: StackSettings) -> None:
    svc = ClickHouseService(Settings(stack=stack))
    argv = ["/usr/sbin/clickhouse-server", f"--config-file={svc.config_file}"]
    assert svc.matches(argv)
    assert not svc.matches(["/usr/sbin/clickhouse-server", "--config-file=/etc/x.xml"])
    assert svc.ports == (29000, 28123)


def test_redis_conf(stack: StackSettings) -> None:
    text = redis_conf(stack, data_dir=Path("/d/a b"), log_file=Path("/l/redis.log"))
    lines = set(text.splitlines())
    assert {"port 26379", "bind 127.0.0.1", "daemonize no", "appendonly yes"} <= lines
    assert {'dir "/d/a b"', 'logfile "/l/redis.log"', "set-proc-title no"} <= lines


def test_redis_matches_only_its_own_config(stack: StackSettings) -> None:
    svc = RedisService(Settings(stack=stack))
    assert svc.matches(["/usr/bin/redis-server", str(svc.config_file)])
    assert not svc.matches(["/usr/bin/vim", str(svc.config_file)])
    assert not svc.matches(["/usr/bin/redis-server", "/etc/redis/redis.conf"])
