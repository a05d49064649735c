"""ClickHouse server (Debian's ``clickhouse-server`` 18.16) with generated config and users files.

Runs in the foreground as whoever starts it (root included: 18.16 does not refuse to run as root
and needs no flag for it); all state lives under ``<home>/clickhouse``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

from cxstream.errors import ServiceError
from cxstream.settings import StackSettings
from cxstream.stack.service import (
    LOCALHOST,
    Service,
    find_executable,
    render_template,
    write_if_changed,
)

#: per-query memory cap of the ``default`` profile (the shipped default is 10 GB)
MAX_MEMORY_USAGE_BYTES = 2 * 1024**3


def config_xml(
    stack: StackSettings, *, base: Path, users_file: Path, log_file: Path, error_log_file: Path
) -> str:
    values: dict[str, object] = {
        "tcp_port": stack.clickhouse_port,
        "http_port": stack.clickhouse_http_port,
        "data_dir": base / "data",
        "tmp_dir": base / "tmp",
        "user_files_dir": base / "user_files",
        "format_schema_dir": base / "format_schemas",
        "users_file": users_file,
        "log_file": log_file,
        "error_log_file": error_log_file,
    }
    return render_template("config.xml", {k: escape(str(v)) for k, v in values.items()})


def users_xml(max_memory_usage: int = MAX_MEMORY_USAGE_BYTES) -> str:
    return render_template("users.xml", {"max_memory_usage": max_memory_usage})


class ClickHouseService(Service):
    name = "clickhouse"

    @property
    def port(self) -> int:
        return self.stack.clickhouse_port

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.stack.clickhouse_port, self.stack.clickhouse_http_port)

    @property
    def config_file(self) -> Path:
        return self.dir / "config.xml"

    @property
    def users_file(self) -> Path:
        return self.dir / "users.xml"

    @property
    def error_log_file(self) -> Path:
        return self.log_file.with_name(f"{self.name}.err.log")

    def prepare(self) -> None:
        super().prepare()
        for sub in ("data", "tmp", "user_files", "format_schemas"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        write_if_changed(self.users_file, users_xml())
        write_if_changed(
            self.config_file,
            config_xml(
                self.stack,
                base=self.dir,
                users_file=self.users_file,
                log_file=self.log_file,
                error_log_file=self.error_log_file,
            ),
        )

    def argv(self) -> list[str]:
        server = find_executable(
            "clickhouse-server",
            "install ClickHouse (apt-get install clickhouse-server clickhouse-client)",
            extra_dirs=("/usr/sbin", "/usr/bin"),
        )
        return [server, f"--config-file={self.config_file}"]

    def matches(self, argv: Sequence[str]) -> bool:
        return (
            Path(argv[0]).name.startswith("clickhouse")
            and f"--config-file={self.config_file}" in argv
        )

    def probe(self, timeout: float) -> None:
        from clickhouse_driver import Client

        client = Client(
            host=LOCALHOST,
            port=self.port,
            user="default",
            connect_timeout=timeout,
            send_receive_timeout=timeout,
            sync_request_timeout=timeout,
        )
        try:
            if client.execute("SELECT 1") != [(1,)]:
                raise ServiceError(f"ClickHouse on port {self.port}: SELECT 1 did not return 1")
        finally:
            client.disconnect()
