"""``cxstream stack`` commands against an empty stack home (nothing is started)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cxstream.cli import cli
from cxstream.errors import ConfigurationError
from cxstream.settings import load_settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "stack"
    monkeypatch.chdir(tmp_path)  # no developer .env file may leak in
    monkeypatch.setenv("CX_STACK__HOME", str(home))
    for name in ("KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "REDIS_PORT", "CLICKHOUSE_PORT"):
        monkeypatch.setenv(f"CX_STACK__{name}", str(_free_port()))
    load_settings.cache_clear()
    yield home
    load_settings.cache_clear()


def test_help_lists_commands() -> None:
    result = CliRunner().invoke(cli, ["stack", "--help"])
    assert result.exit_code == 0
    for command in ("up", "down", "status", "fetch", "logs"):
        assert command in result.output


def test_status_of_stopped_stack_fails(empty_home: Path) -> None:
    result = CliRunner().invoke(cli, ["stack", "status"])
    assert result.exit_code == 1
    for name in ("kafka", "redis", "clickhouse"):
        assert name in result.output
    assert str(empty_home / "logs" / "redis.log") in result.output
    assert "not every service is healthy" in result.output


def test_down_of_stopped_stack_is_a_noop(empty_home: Path) -> None:
    result = CliRunner().invoke(cli, ["stack", "down"])
    assert result.exit_code == 0
    assert result.output.count("not running") == 3


def test_unknown_service_is_rejected(empty_home: Path) -> None:
    result = CliRunner().invoke(cli, ["stack", "up", "--only", "kafka,zookeeper"])
    assert isinstance(result.exception, ConfigurationError)
    assert "zookeeper" in str(result.exception)


def test_logs_of_a_service_without_log(empty_home: Path) -> None:
    result = CliRunner().invoke(cli, ["stack", "logs", "clickhouse"])
    assert result.exit_code == 0
    assert str(empty_home / "logs" / "clickhouse.log") in result.output
